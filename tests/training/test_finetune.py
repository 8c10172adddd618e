from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gpt_sovits.checkpoint import detect, load_gpt, load_sovits
from gpt_sovits.errors import GSVError
from scripts import train_cmds

EN_SLT = Path(__file__).resolve().parents[1] / "data" / "voices" / "en_slt"


def _gsv(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gsv")
    train_cmds.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _small_voice(root: Path, n: int) -> Path:
    """A voice folder with n utterances and its own list file."""
    root.mkdir()
    lines = (EN_SLT / "clone.list").read_text().splitlines()[:n]
    for line in lines:
        shutil.copy(EN_SLT / line.split("|")[0], root / Path(line.split("|")[0]).name)
    (root / "voice.list").write_text("\n".join(f"{Path(l.split('|')[0]).name}|v|en|{l.split('|')[3]}" for l in lines))
    return root


@pytest.mark.slow
def test_finetune_end_to_end_on_tiny_models(tmp_path, capsys) -> None:
    voice = _small_voice(tmp_path / "voice", 4)
    out = tmp_path / "out"
    argv = ["finetune", str(voice), "-o", str(out), "--random-tiny", "--device", "cpu", "--no-progress",
            "--batch-size", "2", "--s2-max-steps", "3", "--s1-max-steps", "4"]
    assert _gsv(argv) == 0
    printed = capsys.readouterr().out
    gpt, sovits = out / "gpt.safetensors", out / "sovits.safetensors"
    assert f"--gpt-weights {gpt}" in printed and f"--sovits-weights {sovits}" in printed and "gsv clone" in printed
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["dataset"]["accepted"] == 4 and summary["s2"]["steps"] == 3 and summary["s1"]["steps"] == 4
    assert detect(gpt).kind == "gpt" and detect(sovits).kind == "sovits"
    load_gpt(gpt)
    load_sovits(sovits)

    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.pipeline import SynthesisParams, Synthesizer, VoicePrompt
    from gpt_sovits.audio import load_audio

    bundle = ModelBundle.random_tiny(0).with_weights(gpt=gpt, sovits=sovits)
    ref, sr = load_audio(EN_SLT / "ref.flac")
    voice_prompt = VoicePrompt.from_audio(bundle, ref, sr, (EN_SLT / "ref.txt").read_text(), "en")
    audio = Synthesizer(bundle).synthesize("Hello there.", voice_prompt, SynthesisParams(seed=1, max_new_tokens=20))
    assert audio.dtype == np.float32 and audio.size > 0 and np.isfinite(audio).all()

    # a rerun finds everything done: no new utterances, training resumes at its final step
    assert _gsv(argv) == 0
    assert "0 new" in capsys.readouterr().out
    assert json.loads((out / "finetune.json").read_text())["s1"]["steps"] == 4


def test_a_stopped_finetune_exits_75_before_the_next_stage_and_resumes(tmp_path, capsys, monkeypatch) -> None:
    from training.runtime import StopSignal

    voice = _small_voice(tmp_path / "voice", 2)
    out = tmp_path / "out"
    argv = ["finetune", str(voice), "-o", str(out), "--random-tiny", "--device", "cpu", "--no-progress",
            "--batch-size", "2", "--s2-max-steps", "3", "--s1-max-steps", "2"]
    monkeypatch.setattr(StopSignal, "requested", lambda self: True)  # SIGTERM during the first S2 step
    assert _gsv(argv) == train_cmds.EXIT_STOPPED
    assert "stopped during the SoVITS stage at step 1" in capsys.readouterr().out
    assert not (out / "s1").exists() and not (out / "sovits.safetensors").exists()

    monkeypatch.undo()
    assert _gsv(argv) == 0
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["s2"]["steps"] == 3 and summary["s1"]["steps"] == 2


def test_prepare_and_train_commands_on_tiny_models(tmp_path, capsys) -> None:
    voice = _small_voice(tmp_path / "voice", 2)
    assert _gsv(["prepare", str(voice), "-o", str(tmp_path / "ds"), "--random-tiny", "--no-progress",
                 "--set", "max_seconds=9"]) == 0
    assert "2 utterances" in capsys.readouterr().out
    assert json.loads((tmp_path / "ds" / "prepare_config.json").read_text())["max_seconds"] == 9
    assert _gsv(["train", "gpt", "--data", str(tmp_path / "ds"), "-o", str(tmp_path / "s1"), "--random-tiny",
                 "--max-steps", "2", "--batch-size", "2", "--device", "cpu", "--no-progress"]) == 0
    assert "GPT: 2 steps" in capsys.readouterr().out
    assert (tmp_path / "s1" / "gpt.safetensors").is_file()


def test_command_errors_say_what_is_missing(tmp_path) -> None:
    voice = _small_voice(tmp_path / "voice", 1)
    with pytest.raises(GSVError) as err:
        _gsv(["prepare", str(voice), "-o", str(tmp_path / "ds")])
    assert "--sovits" in str(err.value) and "--hubert" in str(err.value)
    with pytest.raises(GSVError) as err:
        _gsv(["train", "sovits", "--data", str(tmp_path / "ds"), "-o", str(tmp_path / "run")])
    assert "--base" in str(err.value)
    with pytest.raises(GSVError) as err:
        _gsv(["prepare", str(voice), "-o", str(tmp_path / "ds"), "--random-tiny", "--set", "nope=1"])
    assert "nope" in str(err.value)
    with pytest.raises(GSVError) as err:
        _gsv(["finetune", str(voice), "-o", str(tmp_path / "out"), "--base-gpt", str(tmp_path / "missing.ckpt")])
    assert err.value.code == "model_not_found"
