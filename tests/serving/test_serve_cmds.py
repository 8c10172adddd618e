"""`gsv serve` / `gsv clone` / `gsv say` flags: model resolution, and messages that say what to do."""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from scripts.cli import main

RECORDING = Path(__file__).resolve().parents[1] / "data" / "voices" / "en_slt" / "ref.flac"


@pytest.fixture(autouse=True)
def clean_env(no_gsv_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No GSV_* variables or .env file from the machine running the tests; no speaker encoder."""
    monkeypatch.setenv("GSV_SPEAKER_EMBEDDINGS", "0")
    return no_gsv_env


def test_serve_without_models_says_what_is_missing_and_how_to_provide_it(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    for hint in ("GPT (text-to-semantic) weights", "not configured", "--gpt", "GSV_GPT", "--sovits",
                 "--hubert-dir", "GSV_HUBERT_DIR", "--models-dir", "--model-version", "--random-weights",
                 "GSV_RANDOM_WEIGHTS=1"):
        assert hint in err, hint


def test_serve_with_an_incomplete_models_dir_lists_each_missing_file(tmp_path: Path, capsys) -> None:
    hubert = tmp_path / "pm" / "chinese-hubert-base"
    hubert.mkdir(parents=True)
    (hubert / "config.json").write_text("{}")
    (hubert / "model.safetensors").write_bytes(b"w")
    assert main(["serve", "--models-dir", str(tmp_path / "pm"), "--model-version", "v2ProPlus"]) == 2
    err = capsys.readouterr().err
    for name in ("s1v3.ckpt", "v2Pro/s2Gv2ProPlus.pth", "sv/pretrained_eres2netv2w24s4ep4.ckpt", "--sv"):
        assert name in err, name
    assert "chinese-hubert-base/config.json" not in err  # present, so not reported


def test_contradicting_or_invalid_flags_are_one_line_errors(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--random-weights", "--gpt", "x.ckpt"]) == 2
    assert "--gpt" in capsys.readouterr().err
    assert main(["clone", str(RECORDING), "--random-weights", "--gpt", "ft.safetensors"]) == 2
    err = capsys.readouterr().err
    assert "invalid_arguments" in err and "--gpt-weights" in err  # the flag that attaches a fine-tune
    assert main(["serve", "--random-weights", "--model-version", "v3"]) == 2
    assert "model_version" in capsys.readouterr().err
    assert main(["clone", str(tmp_path / "missing.flac"), "--random-weights"]) == 2
    assert "missing.flac" in capsys.readouterr().err


def test_clone_and_say_load_models_from_our_layout(tmp_path: Path, capsys) -> None:
    """The settings' paths feed `ModelBundle.from_paths` (serving.app.load_bundle) end to end."""
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.checkpoint import save_gpt, save_sovits

    source = ModelBundle.random_tiny(seed=4)
    models = tmp_path / "models"
    save_gpt(source.gpt, source.gpt_config, models / "gpt")
    save_sovits(source.sovits, source.sovits_config, models / "sovits")
    source.ssl.model.save_pretrained(models / "hubert")
    common = ["--models-dir", str(models), "--data-dir", str(tmp_path / "data")]
    assert main(["clone", str(RECORDING), "--language", "en", *common]) == 0
    voice = capsys.readouterr().out.strip().splitlines()[-1]
    out = tmp_path / "hi.wav"
    assert main(["say", voice, "Hi there.", "-o", str(out), "--language", "en", "--seed", "1", *common]) == 0
    assert sf.info(out).samplerate == source.sample_rate and sf.info(out).frames > 0


def test_clone_and_say_through_a_running_server(tmp_path: Path, tiny_bundle, helpers, capsys) -> None:
    app = helpers.make_app(tmp_path, tiny_bundle, warmup=False)
    with helpers.live_server(app) as (_, url):
        assert main(["clone", str(RECORDING), "--name", "slt", "--language", "en", "--url", url]) == 0
        voice = capsys.readouterr().out.strip().splitlines()[-1]
        out = tmp_path / "remote.wav"
        assert main(["say", voice, "Hi there.", "-o", str(out), "--language", "en", "--seed", "1", "--url", url]) == 0
        assert sf.info(out).frames > 0
        assert main(["say", "v_nope", "Hi.", "-o", str(out), "--url", url]) == 1
        assert "voice_not_found" in capsys.readouterr().err
        # the server owns its data dir: local mode says how to reach the server instead
        assert main(["clone", str(RECORDING), "--random-weights", "--data-dir", str(tmp_path / "data")]) == 2
        assert "--url" in capsys.readouterr().err
    assert main(["say", voice, "Hi.", "-o", str(out), "--url", url]) == 2  # the server is gone
    assert "server_unreachable" in capsys.readouterr().err
