from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gpt_sovits.errors import GSVError
from training.evaluate import EvalError, make_recognizer


def _pocketsphinx_missing() -> bool:
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return True
    return False


pytestmark = pytest.mark.skipif(_pocketsphinx_missing(), reason="pocketsphinx not installed (pip install pocketsphinx)")


def _run_cli(argv: list[str]) -> int:
    from scripts import eval_cmds

    parser = argparse.ArgumentParser()
    eval_cmds.register(parser.add_subparsers())
    args = parser.parse_args(["eval-decoder", *argv])
    return args.func(args)


def test_decoder_check_separates_the_recording_from_an_untrained_decoder(
        slt_dataset, tiny_base, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds, _ = slt_dataset
    _, sovits = tiny_base
    out = tmp_path / "check.json"
    assert _run_cli([str(ds.root), "--sovits", str(sovits), "-n", "3", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "posterior" in printed and "tokens" in printed and "original" in printed
    report = json.loads(out.read_text())
    assert len(report["rows"]) == 3
    rates = report["error_rates"]
    # real speech is mostly recognised; random-weight audio (generator alone or the token path) is not
    assert rates["original"] < 0.4
    assert rates["posterior"] > 0.8 and rates["tokens"] > 0.8
    row = report["rows"][0]
    assert set(row["hypotheses"]) == {"original", "posterior", "tokens"} and row["words"] > 0


def test_decoder_check_refuses_files_without_a_posterior_and_unsupported_languages(
        slt_dataset, tiny_base, tmp_path: Path) -> None:
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.checkpoint import save_sovits
    from training.decoder_check import check_decoder

    ds, _ = slt_dataset
    bundle = ModelBundle.random_tiny(seed=0)
    inference_only = save_sovits(bundle.sovits, bundle.sovits_config, tmp_path / "ft_sovits")
    recognizer = make_recognizer("pocketsphinx")
    with pytest.raises(GSVError, match="posterior encoder"):
        check_decoder(inference_only, ds.root, recognizer, n=1)
    with pytest.raises(EvalError, match="does not support 'zh'"):
        check_decoder(tiny_base[1], ds.root, recognizer, n=1, lang="zh")
