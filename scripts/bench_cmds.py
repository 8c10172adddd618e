"""`gsv bench`: streaming latency/throughput per model size, backend, precision and concurrency."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("gsv.bench")


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark streaming synthesis (random weights, forced token budget)",
        description="Time to first chunk, RTF, GPT tokens/s, SoVITS speed and peak memory for each "
        "size x backend x precision x concurrency, on random weights with a fixed token budget "
        "per phone (random models never stop on their own). See serving/backends/bench.py.",
    )
    p.add_argument("--sizes", type=_csv, default=["tiny"], help="model sizes, comma-separated (tiny, v2)")
    p.add_argument("--backends", type=_csv, default=["torch"], help="torch, onnx, tensorrt (comma-separated)")
    p.add_argument("--precision", type=_csv, default=["auto"],
                   help="auto, fp32, fp16, bf16, int8 (comma-separated; auto = fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--concurrency", type=lambda v: [int(x) for x in _csv(v)], default=[1],
                   help="concurrent streams, comma-separated (e.g. 1,4,8)")
    p.add_argument("--texts", type=_csv, default=None,
                   help="subset of bench texts: en_short,en_long,zh_short,zh_long,mixed (default all)")
    p.add_argument("--repeats", type=int, default=1, help="passes over the texts per configuration")
    p.add_argument("--tokens-per-phone", type=float, default=2.2, help="forced GPT tokens per target phone")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all cores)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--max-concurrency", action="append", default=[], metavar="SIZE=N",
                   help="skip concurrency above N for SIZE, e.g. v2=1 (repeatable)")
    p.add_argument("--first-chunk-tokens", type=int, default=None, help="tokens in the first streamed chunk")
    p.add_argument("--first-lookahead", type=int, default=None,
                   help="right-context tokens the first chunk waits for (SynthesisParams.first_lookahead_tokens)")
    p.add_argument("--chunk-tokens", type=int, default=None, help="largest streamed chunk in tokens")
    p.add_argument("--reference", default="default", choices=["default", "short", "free"],
                   help="voice reference: the 6 s default, a 3 s clip (low-latency voice), or the 6 s "
                        "clip without a transcript (reference-free prompt)")
    p.add_argument("--export-dir", type=Path, default=None, help="where ONNX exports are written and reused")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the JSON report here")
    p.set_defaults(func=run_bench_cmd)


def quiet_openmp_waits() -> None:
    """Let idle OpenMP workers sleep instead of spinning (unless the user chose a policy).

    Must run before torch is imported (libgomp reads it once). On a shared CPU a spinning pool
    thread holds a core that the other pool thread, or the concurrent GPT/SoVITS thread, needs:
    measured on this 2-core machine under load, a 2-thread v2 INT8 prefill took 1.1-3.9 s
    spinning vs 0.33 s passive (0.30 s with 1 thread), a decode step 44-300 ms vs 27 ms.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_bench_cmd(args: argparse.Namespace) -> int:
    quiet_openmp_waits()
    from serving.backends.bench import TEXTS, BenchOptions, format_table, run_bench

    caps = {}
    for item in args.max_concurrency:
        size, _, n = item.partition("=")
        caps[size] = int(n)
    options = BenchOptions(
        sizes=args.sizes, backends=args.backends, precisions=args.precision, concurrency=args.concurrency,
        texts=args.texts or [t.name for t in TEXTS], repeats=args.repeats,
        tokens_per_phone=args.tokens_per_phone, threads=args.threads, device=args.device,
        export_root=args.export_dir, max_concurrency_by_size=caps, reference=args.reference,
        stream={key: value for key, value in (("first_chunk_tokens", args.first_chunk_tokens),
                                              ("first_lookahead_tokens", args.first_lookahead),
                                              ("chunk_tokens", args.chunk_tokens)) if value is not None},
    )
    report = run_bench(options, log=lambda line: log.info("%s", line))
    print(format_table(report))
    for row in report["results"]:
        per_text = "; ".join(f"{name} {v['ttfc_p50_ms']:.0f} ms / RTF {v['rtf_p50']}"
                             for name, v in row.get("by_text", {}).items())
        if per_text:
            print(f"  {row['size']} {row['backend']} {row['precision']} x{row['concurrency']}: {per_text}")
    print(f"note: {report['meta']['note']}")
    if args.output:
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.output}")
    return 0
