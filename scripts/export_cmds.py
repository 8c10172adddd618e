"""`gsv export`: write ONNX graphs of the GPT and/or SoVITS plus the gsv_export.json sidecar."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("gsv.export")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export the GPT / SoVITS to ONNX (fp32, fp16 or int8) with a JSON sidecar",
        description="Writes t2s_prefill/t2s_step (with --gpt) and sovits_decode/ref_style/"
        "prompt_codes (with --sovits) into -o DIR, plus gsv_export.json. Run the result with "
        "backend=onnx (GSV_BACKEND=onnx) or build TensorRT engines from it.",
    )
    p.add_argument("--gpt", help="GPT weights to export (official .ckpt or our .safetensors)")
    p.add_argument("--sovits", help="SoVITS weights to export (official .pth or our .safetensors)")
    p.add_argument("--random", choices=["tiny", "v2"], default=None,
                   help="export random-weight models of this size instead (tests, benchmarks)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32",
                   help="fp16: half weights/compute with float32 I/O; int8: dynamic INT8 GPT MatMuls")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--max-cache-len", type=int, default=2048, help="KV slots a fixed-shape runtime must hold")
    calib = p.add_argument_group("static INT8 SoVITS (with --precision int8)")
    calib.add_argument("--calibration-ref", help="reference clip (3-10 s) to calibrate the SoVITS decoder on")
    calib.add_argument("--calibration-text", help="transcript of --calibration-ref")
    calib.add_argument("--calibration-lang", default="auto", help="language of --calibration-text")
    calib.add_argument("--hubert", help="chinese-hubert-base directory (to encode --calibration-ref)")
    p.set_defaults(func=run_export)


def _models(args: argparse.Namespace):
    from gpt_sovits.errors import GSVError

    if args.random:
        from serving.backends.bench import random_bundle

        bundle = random_bundle(args.random)
        return bundle, bundle.gpt, bundle.sovits
    if not args.gpt and not args.sovits:
        raise GSVError("give --gpt and/or --sovits weight files (or --random tiny|v2)", code="model_not_found")
    from gpt_sovits.checkpoint import load_gpt, load_sovits

    gpt = load_gpt(args.gpt)[0] if args.gpt else None
    sovits = load_sovits(args.sovits)[0] if args.sovits else None
    return None, gpt, sovits


def _calibration(args: argparse.Namespace, bundle, sovits):
    if args.precision != "int8" or not args.calibration_ref or sovits is None:
        return None
    from gpt_sovits.audio import load_audio
    from gpt_sovits.errors import GSVError
    from gpt_sovits.voice import VoicePrompt
    from serving.export.calibration import sovits_calibration_feeds

    if bundle is None:
        if not args.hubert or not args.gpt:
            raise GSVError("calibration needs --hubert and --gpt (to encode the reference clip)",
                           code="model_not_found")
        from gpt_sovits.bundle import ModelBundle

        bundle = ModelBundle.from_paths(args.gpt, args.sovits, args.hubert)
    audio, sr = load_audio(args.calibration_ref)
    voice = VoicePrompt.from_audio(bundle, audio, sr, args.calibration_text, args.calibration_lang)
    return sovits_calibration_feeds(bundle, voice)


def run_export(args: argparse.Namespace) -> int:
    from serving.export import export_onnx

    bundle, gpt, sovits = _models(args)
    feeds = _calibration(args, bundle, sovits)
    name = bundle.name if bundle is not None else " + ".join(Path(p).name for p in (args.gpt, args.sovits) if p)
    info = export_onnx(args.output, gpt, sovits, precision=args.precision, opset=args.opset,
                       max_cache_len=args.max_cache_len, model_name=name, sovits_calibration=feeds)
    print(f"wrote {', '.join(sorted(info.graphs.values()))} and gsv_export.json to {args.output} "
          f"({info.precision}{', int8: ' + ', '.join(info.quantized_graphs) if info.quantized_graphs else ''})")
    return 0
