"""`gsv finetune` output attaches to a voice, by CLI and by upload, and changes what it sounds like.

One tiny fine-tune (random-tiny base, a few steps) is shared by both checks. Only the two
`.safetensors` files travel, as they would when uploaded: their config is embedded, so the
`.json` sidecars are left behind on purpose. Each check compares the fine-tuned voice with a
voice made from the same recording without weights, at the same seed; a second base voice is the
control that the comparison is deterministic, so any difference comes from the weights.
"""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from scripts.cli import main

VOICES = Path(__file__).resolve().parents[1] / "data" / "voices"
EN_SLT = VOICES / "en_slt"
RECORDING = EN_SLT / "ref.flac"
TEXT = "Hello there, nice to meet you."


def _small_voice(root: Path, n: int) -> Path:
    """A training folder with `n` utterances of en_slt and its list file."""
    root.mkdir()
    lines = (EN_SLT / "clone.list").read_text().splitlines()[:n]
    for line in lines:
        shutil.copy(EN_SLT / line.split("|")[0], root / Path(line.split("|")[0]).name)
    (root / "voice.list").write_text(
        "\n".join(f"{Path(line.split('|')[0]).name}|v|en|{line.split('|')[3]}" for line in lines))
    return root


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(gpt, sovits) `.safetensors` of a tiny fine-tune, copied alone into a fresh folder."""
    work = tmp_path_factory.mktemp("finetune")
    voice = _small_voice(work / "voice", 2)
    out = work / "out"
    argv = ["finetune", str(voice), "-o", str(out), "--random-tiny", "--device", "cpu", "--no-progress",
            "--batch-size", "2", "--s2-max-steps", "2", "--s1-max-steps", "2"]
    assert main(argv) == 0
    lone = work / "upload"
    lone.mkdir()
    for name in ("gpt.safetensors", "sovits.safetensors"):
        shutil.copy(out / name, lone / name)
    return lone / "gpt.safetensors", lone / "sovits.safetensors"


@pytest.fixture
def quiet_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No .env from the checkout, no speaker encoder (not what is tested here)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GSV_SPEAKER_EMBEDDINGS", "0")
    return tmp_path


def _read(data: bytes) -> np.ndarray:
    audio, _ = sf.read(io.BytesIO(data), dtype="float32")
    return audio


@pytest.mark.slow
def test_cli_clone_attaches_the_finetune_and_say_uses_it(finetuned, quiet_env: Path, capsys) -> None:
    gpt, sovits = finetuned
    common = ["--random-weights", "--data-dir", str(quiet_env / "data")]

    def clone(*extra: str) -> str:
        assert main(["clone", str(RECORDING), "--language", "en", *extra, *common]) == 0
        return capsys.readouterr().out.strip().splitlines()[-1]

    def say(voice: str, name: str) -> np.ndarray:
        out = quiet_env / f"{name}.wav"
        assert main(["say", voice, TEXT, "-o", str(out), "--language", "en", "--seed", "3", *common]) == 0
        return _read(out.read_bytes())

    tuned = clone("--gpt-weights", str(gpt), "--sovits-weights", str(sovits))
    base, control = clone(), clone()
    tuned_audio, base_audio, control_audio = say(tuned, "tuned"), say(base, "base"), say(control, "control")
    assert base_audio.size > 0 and tuned_audio.size > 0
    np.testing.assert_array_equal(base_audio, control_audio)  # same recording, same seed: same audio
    assert tuned_audio.shape != base_audio.shape or not np.array_equal(tuned_audio, base_audio)

    from serving.storage import SQLiteFileStore

    with SQLiteFileStore(quiet_env / "data") as store:
        record = store.get(tuned)
        assert (record.gpt_weights, record.sovits_weights) == ("weights/gpt.safetensors",
                                                               "weights/sovits.safetensors")
        assert store.get(base).has_finetune is False


def _wait_ready(client, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"the app did not become ready: {client.get('/readyz').text}")


@pytest.mark.slow
def test_upload_with_weights_then_tts_uses_the_finetune(finetuned, quiet_env: Path) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import Settings

    gpt, sovits = finetuned
    settings = Settings(data_dir=quiet_env / "data", random_weights=True, warmup=False, rate_limit_per_minute=0)
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)

        def upload(**weights: Path) -> str:
            files = {"file": (RECORDING.name, RECORDING.read_bytes(), "audio/flac")}
            files |= {field: (path.name, path.read_bytes(), "application/octet-stream")
                      for field, path in weights.items()}
            resp = client.post("/v1/voices", files=files, data={"language": "en"})
            assert resp.status_code == 201, resp.text
            return resp.json()["id"]

        def tts(voice: str) -> np.ndarray:
            resp = client.post("/v1/tts", json={"voice_id": voice, "text": TEXT, "language": "en", "seed": 3})
            assert resp.status_code == 200, resp.text
            return _read(resp.content)

        tuned = upload(gpt_weights=gpt, sovits_weights=sovits)
        base, control = upload(), upload()
        tuned_audio, base_audio, control_audio = tts(tuned), tts(base), tts(control)
        assert base_audio.size > 0 and tuned_audio.size > 0
        np.testing.assert_array_equal(base_audio, control_audio)
        assert tuned_audio.shape != base_audio.shape or not np.array_equal(tuned_audio, base_audio)
        listed = {v["id"]: v for v in client.get("/v1/voices").json()["voices"]}
        assert set(listed) == {tuned, base, control}
