"""`gsv bench` machinery on tiny models: forced token budget, metrics, CLI parsing."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from scripts import bench_cmds, export_cmds
from serving.backends.bench import TEXTS, BenchError, bench_voice, random_bundle, run_config


@pytest.fixture(scope="module")
def bench_bundle():
    return random_bundle("tiny", seed=2)


def test_forced_budget_and_metrics(bench_bundle):
    voice = bench_voice(bench_bundle)
    text = next(t for t in TEXTS if t.name == "en_short")
    per_phone = 1.5
    segments = bench_bundle.frontend.process(text.text, text.lang, "cut5")
    expected_tokens = sum(max(8, round(per_phone * len(s.phone_ids))) for s in segments)
    from serving.backends import make_backend

    backend = make_backend("torch", bench_bundle, precision="fp32")
    result = run_config(bench_bundle, backend, voice, [text], concurrency=2, repeats=1, per_phone=per_phone)
    assert result["requests"] == 2
    # Every segment decoded exactly its forced budget: speech = tokens * 40 ms, in both streams.
    assert result["speech_seconds"] == pytest.approx(2 * expected_tokens * 0.04, abs=0.01)
    assert 0 < result["ttfc_p50_ms"] <= result["ttfc_p95_ms"] <= 1000 * result["wall_seconds"]
    assert result["gpt_tokens_per_s"] > 0 and result["sovits_audio_s_per_s"] > 0
    assert result["peak_rss_mb"] > 0 and set(result["by_lang"]) == {"en"} and set(result["by_text"]) == {"en_short"}
    assert result["stall_max_ms"] >= result["stall_p50_ms"] >= 0
    json.dumps(result)  # JSON-ready


def test_unknown_size_is_refused():
    with pytest.raises(BenchError, match="gpt_v9.json"):
        random_bundle("v9")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    bench_cmds.register(sub)
    export_cmds.register(sub)
    return parser


def test_cli_flags_parse():
    args = _parser().parse_args(["bench", "--sizes", "tiny,v2", "--backends", "torch,onnx",
                                 "--precision", "fp32,int8", "--concurrency", "1,4,8", "-o", "b.json"])
    assert (args.sizes, args.backends, args.precision, args.concurrency) == (
        ["tiny", "v2"], ["torch", "onnx"], ["fp32", "int8"], [1, 4, 8])
    args = _parser().parse_args(["export", "--random", "tiny", "-o", "out", "--precision", "int8"])
    assert args.func is export_cmds.run_export and args.precision == "int8"


def test_export_command_writes_an_export(tmp_path):
    from serving.export import load_export_info

    args = _parser().parse_args(["export", "--random", "tiny", "-o", str(tmp_path)])
    assert args.func(args) == 0
    info = load_export_info(tmp_path)
    assert info.model_name == "random-tiny-0" and len(info.graphs) == 5


def test_openmp_waits_are_made_passive_only_before_torch_and_never_over_the_user(monkeypatch):
    code = ("import os; from scripts.bench_cmds import quiet_openmp_waits; quiet_openmp_waits(); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    fresh = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == "PASSIVE"
    user = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                          capture_output=True, text=True, check=True)
    assert user.stdout.strip() == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    bench_cmds.quiet_openmp_waits()  # torch is loaded in this process: too late, leave it alone
    assert "OMP_WAIT_POLICY" not in os.environ


def test_playback_clock_counts_only_waits_after_the_first_chunk():
    from serving.backends.bench import PlaybackClock

    clock = PlaybackClock()
    clock.arrive(0.5, 0.2)   # playing 0.5 -> 0.7: the first chunk's own latency is not a stall
    clock.arrive(0.6, 0.3)   # early: queued, plays 0.7 -> 1.0
    assert clock.stall_s == 0.0
    clock.arrive(1.25, 0.1)  # 0.25 s of silence before it plays 1.25 -> 1.35
    clock.arrive(1.3, 0.0)   # empty chunks change nothing
    clock.arrive(1.5, 0.1)   # another 0.15 s gap
    assert abs(clock.stall_s - 0.40) < 1e-9
    assert abs(clock.play_end - 1.6) < 1e-9


def test_short_reference_gives_a_shorter_prompt(bench_bundle):
    default, short = bench_voice(bench_bundle), bench_voice(bench_bundle, "short")
    assert 0 < short.prompt_tokens.numel() < 0.7 * default.prompt_tokens.numel()
    assert short.prompt_text.startswith("Can you remind me")
    free = bench_voice(bench_bundle, "free")
    assert free.ref_free and free.prompt_tokens is None
    with pytest.raises(BenchError):
        bench_voice(bench_bundle, "nope")
