"""`gsv serve`, `gsv clone`, `gsv say`: missing-weights message, local mode end to end, remote mode."""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from scripts import serve_cmds

VOICE = Path(__file__).resolve().parent.parent / "data" / "voices" / "en_slt"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gsv")
    serve_cmds.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


pytestmark = pytest.mark.usefixtures("no_gsv_env")


def test_serve_without_weights_says_what_is_missing_and_exits_nonzero(tmp_path, capsys) -> None:
    rc = run(["serve", "--data-dir", str(tmp_path), "--gpt", str(tmp_path / "missing.ckpt")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "missing.ckpt" in err and "file not found" in err
    for hint in ("--sovits", "GSV_SOVITS", "--hubert-dir", "--models-dir", "--random-weights"):
        assert hint in err


def test_clone_then_say_on_the_local_data_dir(tmp_path, capsys) -> None:
    common = ["--data-dir", str(tmp_path / "data"), "--random-weights"]
    rc = run(["clone", str(VOICE / "ref.flac"), "--name", "slt", "--language", "en",
              "--transcript", (VOICE / "ref.txt").read_text().strip(), *common])
    assert rc == 0
    voice_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert voice_id.startswith("v_")
    out = tmp_path / "out.flac"
    assert run(["say", voice_id, "Hi there.", "-o", str(out), "--seed", "1", "--language", "en", *common]) == 0
    audio, sr = sf.read(out)
    assert sr == 32000 and audio.size > 1280
    with pytest.raises(Exception) as info:  # another key's view: the voice does not exist
        run(["say", voice_id, "Hi.", "-o", str(out), "--api-key", "someone-else", *common])
    assert getattr(info.value, "code", "") == "voice_not_found"


def test_remote_say_and_clone_talk_http(tmp_path, monkeypatch, capsys) -> None:
    calls: list[dict] = []
    wav = io.BytesIO()
    sf.write(wav, np.zeros(3200, np.float32), 32000, format="WAV")

    def fake_post(url, **kwargs):
        calls.append({"url": url, **kwargs})
        if url.endswith("/v1/tts"):
            return httpx.Response(200, content=wav.getvalue())
        if kwargs["data"].get("name") == "bad":
            return httpx.Response(422, json={"error": {"code": "no_speech", "message": "No speech found."}})
        return httpx.Response(201, json={"id": "v_remote", "warnings": [{"message": "sounds like v_a"}]})

    monkeypatch.setattr(httpx, "post", fake_post)
    out = tmp_path / "x.wav"
    assert run(["say", "v_remote", "Hello.", "-o", str(out), "--url", "http://srv:9/", "--api-key", "k",
                "--seed", "3"]) == 0
    assert out.read_bytes() == wav.getvalue()
    tts = calls[-1]
    assert tts["url"] == "http://srv:9/v1/tts" and tts["headers"] == {"Authorization": "Bearer k"}
    assert tts["json"] == {"voice_id": "v_remote", "text": "Hello.", "language": "auto", "format": "wav",
                           "speed": 1.0, "seed": 3}
    assert run(["clone", str(VOICE / "ref.flac"), "--url", "http://srv:9", "--name", "n"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("v_remote") and "sounds like v_a" in captured.err
    assert calls[-1]["files"]["file"][0] == "ref.flac"
    assert run(["clone", str(VOICE / "ref.flac"), "--url", "http://srv:9", "--name", "bad"]) == 1
    assert "error [no_speech]: No speech found." in capsys.readouterr().err


def test_every_flag_has_help() -> None:
    parser = argparse.ArgumentParser(prog="gsv")
    sub = parser.add_subparsers(dest="command")
    serve_cmds.register(sub)
    for name, sub_parser in sub.choices.items():
        for action in sub_parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"gsv {name} {action.option_strings} has no help text"
    assert sorted(sub.choices) == ["clone", "say", "serve"]
