"""POST /v1/tts and the OpenAI speech route on tiny random models: formats, resampling, streaming,
determinism, concurrency and request errors."""
from __future__ import annotations

import io
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from serving.audio_encoding import decode_pcm16, supported_formats
from gpt_sovits.sovits.streaming import relative_l2 as rel_l2

# Streamed audio is decoded chunk by chunk (left context + cross-fade), so with the prior noise
# off (noise_scale=0) it matches the whole file within this relative L2 (see sovits/streaming.py).
STREAM_TOLERANCE = 0.3

TEXT = "Hi there."


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_bundle, helpers):
    app = helpers.make_app(tmp_path_factory.mktemp("tts"), tiny_bundle, workers=2, max_text_chars=200)
    with helpers.running(app) as c:
        yield c


@pytest.fixture(scope="module")
def voice(client, helpers) -> str:
    return helpers.upload_voice(client, "en_slt")["id"]


@pytest.fixture(scope="module")
def wav_ref(client, voice) -> tuple[np.ndarray, int]:
    """The reference rendering: TEXT, seed 7, as a whole WAV file."""
    resp = tts(client, voice, format="wav")
    assert resp.status_code == 200, resp.text
    audio, sr = sf.read(io.BytesIO(resp.content), dtype="float32")
    return audio, sr


def tts(client, voice: str, text: str = TEXT, **fields):
    body = {"voice_id": voice, "text": text, "language": "en", "seed": 7}
    body.update(fields)
    return client.post("/v1/tts", json=body)


def test_wav_file_is_a_valid_32k_mono_file(client, voice, wav_ref) -> None:
    audio, sr = wav_ref
    assert sr == 32000 and audio.ndim == 1 and audio.size > 1280
    resp = tts(client, voice)
    assert resp.headers["content-type"] == "audio/wav" and resp.headers["x-sample-rate"] == "32000"


def test_same_seed_same_audio_other_seed_differs(client, voice, wav_ref) -> None:
    again, _ = sf.read(io.BytesIO(tts(client, voice).content), dtype="float32")
    np.testing.assert_array_equal(again, wav_ref[0])
    other, _ = sf.read(io.BytesIO(tts(client, voice, seed=8).content), dtype="float32")
    n = min(len(other), len(again))
    assert len(other) != len(again) or np.abs(other[:n] - again[:n]).mean() > 1e-3


def test_pcm_is_the_wav_payload_without_header(client, voice, wav_ref) -> None:
    resp = tts(client, voice, format="pcm")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("audio/L16")
    np.testing.assert_allclose(decode_pcm16(resp.content), wav_ref[0], atol=1 / 16000)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3", "opus"])
def test_compressed_formats_decode_to_the_same_length(client, voice, wav_ref, fmt) -> None:
    if fmt not in supported_formats():
        pytest.skip(f"libsndfile here cannot write {fmt}")
    resp = tts(client, voice, format=fmt)
    assert resp.status_code == 200, resp.text
    audio, sr = sf.read(io.BytesIO(resp.content), dtype="float32")
    seconds = wav_ref[0].size / wav_ref[1]
    assert abs(audio.shape[0] / sr - seconds) < 0.1  # codecs pad a few ms
    if fmt == "flac":  # lossless: identical to the WAV (both 16-bit)
        np.testing.assert_allclose(audio, wav_ref[0], atol=1e-4)


def test_sample_rate_resamples_the_output(client, voice, wav_ref) -> None:
    resp = tts(client, voice, sample_rate=16000)
    audio, sr = sf.read(io.BytesIO(resp.content), dtype="float32")
    assert sr == 16000 and resp.headers["x-sample-rate"] == "16000"
    assert abs(audio.size - wav_ref[0].size / 2) <= 2


def test_streamed_wav_has_open_ended_header_and_joins_to_the_file(client, voice, wav_ref) -> None:
    resp = tts(client, voice, format="wav", stream=True, noise_scale=0.0)
    assert resp.status_code == 200
    data = resp.content
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    riff_size, data_size = struct.unpack("<I", data[4:8])[0], struct.unpack("<I", data[40:44])[0]
    assert riff_size == data_size == 0xFFFFFFFF
    assert struct.unpack("<I", data[24:28])[0] == 32000
    joined = decode_pcm16(data[44:])
    whole, _ = sf.read(io.BytesIO(tts(client, voice, format="wav", noise_scale=0.0).content), dtype="float32")
    assert joined.shape == whole.shape == wav_ref[0].shape
    assert rel_l2(joined, whole) < STREAM_TOLERANCE


def test_streamed_pcm_resampled_matches_resampled_file(client, voice) -> None:
    streamed = decode_pcm16(tts(client, voice, format="pcm", stream=True, sample_rate=24000, noise_scale=0.0).content)
    whole = decode_pcm16(tts(client, voice, format="pcm", sample_rate=24000, noise_scale=0.0).content)
    assert abs(streamed.size - whole.size) <= 2
    n = min(streamed.size, whole.size)
    assert rel_l2(streamed[:n], whole[:n]) < STREAM_TOLERANCE


def test_stream_refuses_formats_that_cannot_stream(client, voice) -> None:
    resp = tts(client, voice, format="flac", stream=True)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unsupported_format"


def test_text_over_the_limit_is_413_with_code(client, voice) -> None:
    resp = tts(client, voice, text="a" * 201)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "text_too_long"


def test_whitespace_text_is_422(client, voice) -> None:
    resp = tts(client, voice, text="   ")
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "empty_text"


def test_unknown_voice_is_404(client) -> None:
    resp = tts(client, "v_doesnotexist")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "voice_not_found"


@pytest.mark.parametrize("patch", [
    {"top_k": 0}, {"top_p": 0}, {"temperature": 5}, {"speed": 9}, {"format": "aiff"},
    {"language": "klingon"}, {"split_method": "cut9"}, {"sample_rate": 100}, {"unknown": 1},
])
def test_invalid_fields_are_422_validation_errors(client, voice, patch) -> None:
    resp = tts(client, voice, **patch)
    body = resp.json()
    assert resp.status_code == 422 and body["error"]["code"] == "validation_error"
    assert body["error"]["details"] and body["error"]["message"]


def test_language_without_frontend_is_a_422_with_its_code(client, voice) -> None:
    resp = tts(client, voice, text="こんにちは。", language="ja")
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] not in ("validation_error", "internal_error")


def test_two_voices_at_once_equal_each_alone(client, voice, helpers) -> None:
    other = helpers.upload_voice(client, "en_allison")["id"]
    control = client.app.state.control
    jobs = [(voice, "Good morning."), (other, "Good morning.")]
    for v, t in jobs:
        assert tts(client, v, t, format="pcm").status_code == 200
    alone = dict(control.outputs[-2:])
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda job: tts(client, job[0], job[1], format="pcm").status_code, jobs))
    assert codes == [200, 200]
    together = dict(control.outputs[-2:])
    # compared as float32 from the synthesizer: 16-bit output of random tiny models hides differences
    assert alone.keys() == together.keys() and len(alone) == 2
    for key in alone:
        np.testing.assert_array_equal(alone[key], together[key])
    first, second = alone.values()
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_openai_speech_mp3_and_pcm_at_24k(client, voice) -> None:
    if "mp3" in supported_formats():
        resp = client.post("/v1/audio/speech", json={"model": "tts-1", "input": TEXT, "voice": voice})
        assert resp.status_code == 200 and resp.headers["content-type"] == "audio/mpeg"
        audio, sr = sf.read(io.BytesIO(resp.content), dtype="float32")
        assert audio.size > 0
    resp = client.post("/v1/audio/speech", json={"input": TEXT, "voice": voice, "response_format": "pcm",
                                                 "speed": 1.5})
    assert resp.status_code == 200 and resp.headers["x-sample-rate"] == "24000"
    assert len(resp.content) > 0 and len(resp.content) % 2 == 0


def test_openai_speech_errors(client, voice) -> None:
    resp = client.post("/v1/audio/speech", json={"input": TEXT, "voice": voice, "response_format": "aac"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unsupported_format"
    resp = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "alloy"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "voice_not_found"
    resp = client.post("/v1/audio/speech", json={"input": TEXT, "voice": voice, "speed": 10})
    assert resp.status_code == 422


def test_voice_with_finetuned_sovits_synthesizes_with_its_own_bundle(client, helpers, tmp_path) -> None:
    from gpt_sovits.checkpoint_legacy import export_official_sovits
    from gpt_sovits.pipeline import ModelBundle

    tuned = ModelBundle.random_tiny(seed=1)
    weights = export_official_sovits(tuned.sovits, tuned.sovits_config, tmp_path / "sovits.pth")
    ref = helpers.voice_dir / "en_slt" / "ref.flac"
    resp = client.post("/v1/voices", files={"file": (ref.name, ref.read_bytes()),
                                            "sovits_weights": ("ft.pth", weights.read_bytes())},
                       data={"name": "tuned", "language": "en"})
    assert resp.status_code == 201, resp.text
    voice = resp.json()
    assert voice["has_finetune"] is True
    pool = client.app.state.gsv.engine.pool
    loads = pool.loads
    assert len(pool) >= 1  # the upload's validated bundle is already pooled: no load on first use
    assert tts(client, voice["id"], format="pcm").status_code == 200
    assert tts(client, voice["id"], format="pcm").status_code == 200
    assert pool.loads == loads and len(pool) >= 1
    assert client.delete(f"/v1/voices/{voice['id']}").status_code == 204
    assert len(pool) == 0  # deleting the voice drops its bundle


def test_unusable_finetuned_weights_are_422(client, helpers) -> None:
    ref = helpers.voice_dir / "en_slt" / "ref.flac"
    resp = client.post("/v1/voices", files={"file": (ref.name, ref.read_bytes()),
                                            "gpt_weights": ("ft.ckpt", b"not a checkpoint" * 100)})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_weights"
