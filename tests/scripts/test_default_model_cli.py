"""`gsv synth` / `serve` / `clone` / `say` without weight flags use the default base model."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import soundfile as sf

from scripts.cli import main


@pytest.fixture(autouse=True)
def clean_env(no_gsv_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No GSV_* variables or .env file from the machine running the tests; no speaker encoder."""
    monkeypatch.setenv("GSV_SPEAKER_EMBEDDINGS", "0")
    return no_gsv_env


def _synth(voices_dir: Path, out: Path, *extra: str) -> int:
    ref = voices_dir / "en_slt"
    return main(["synth", "--ref", str(ref / "ref.flac"), "--ref-text", (ref / "ref.txt").read_text().strip(),
                 "--ref-lang", "en", "--text", "Good morning.", "--lang", "en", "--seed", "3", "--top-k", "1",
                 "-o", str(out), *extra])


def test_synth_without_weight_flags_uses_the_default(tmp_path: Path, voices_dir: Path, default_base: Path,
                                                     caplog) -> None:
    with caplog.at_level(logging.INFO, logger="gsv.synth"):
        assert _synth(voices_dir, tmp_path / "out.wav") == 0
    audio, sr = sf.read(tmp_path / "out.wav")
    assert sr == 32000 and len(audio) > 0 and len(audio) % 1280 == 0
    assert f"loading models from '{default_base}' (the default base model)" in caplog.text
    assert "content encoder tiny-content" in caplog.text


def test_synth_without_weights_or_default_says_what_to_pass(tmp_path: Path, voices_dir: Path, capsys) -> None:
    assert _synth(voices_dir, tmp_path / "out.wav") == 2
    err = capsys.readouterr().err
    for hint in ("model_not_found", "--gpt", "--sovits", "--hubert", "--models-dir", "--random-tiny",
                 "no default base model", "GSV_DEFAULT_MODELS_DIR"):
        assert hint in err, hint
    assert not (tmp_path / "out.wav").exists()


def test_synth_default_is_moved_by_the_environment(tmp_path: Path, voices_dir: Path, tiny_base_dir: Path,
                                                   monkeypatch) -> None:
    monkeypatch.setenv("GSV_DEFAULT_MODELS_DIR", str(tiny_base_dir))
    assert _synth(voices_dir, tmp_path / "out.wav") == 0


def test_serve_picks_the_default_and_refuses_clearly_without_one(tmp_path: Path, monkeypatch, capsys,
                                                                tiny_base_dir: Path) -> None:
    import scripts.serve_cmds as serve_cmds

    assert main(["serve", "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "no default base model" in err and "--random-weights" in err and "--models-dir" in err
    started = []
    monkeypatch.setattr(serve_cmds, "serve", lambda settings, log_level="info": started.append(settings))
    monkeypatch.setenv("GSV_DEFAULT_MODELS_DIR", str(tiny_base_dir))
    assert main(["serve", "--data-dir", str(tmp_path / "d")]) == 0
    assert started[0].resolve_models().origin == "default"
    assert started[0].bundle_paths()["sovits"] == tiny_base_dir / "sovits.safetensors"


def test_clone_and_say_use_the_default(tmp_path: Path, voices_dir: Path, default_base: Path, capsys) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["clone", str(voices_dir / "en_slt" / "ref.flac"), "--language", "en", *data]) == 0
    voice = capsys.readouterr().out.strip().splitlines()[-1]
    out = tmp_path / "hi.wav"
    assert main(["say", voice, "Hi there.", "-o", str(out), "--language", "en", "--seed", "1", *data]) == 0
    assert sf.info(out).samplerate == 32000 and sf.info(out).frames > 0
