"""Decoding battery, resampling and encoding for gpt_sovits.audio."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gpt_sovits.audio import (
    AudioDecodeError,
    AudioEncodeError,
    encode_audio,
    load_audio,
    peak_normalize,
    resample,
    rms_dbfs,
    supported_encode_formats,
    to_pcm16,
)
from gpt_sovits.errors import GSVError


def _tone(sr: int, seconds: float = 0.5, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(x: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "opus", "mp3"])
def test_encode_decode_round_trip(fmt: str) -> None:
    sr = 16000
    x = _tone(sr)
    data = encode_audio(x, sr, fmt)
    y, out_sr = load_audio(data)
    assert out_sr == sr
    assert y.dtype == np.float32 and y.ndim == 1
    # Lossy codecs add delay/padding: compare the bulk with a lag search.
    assert abs(len(y) - len(x)) < 0.1 * sr
    lags = range(0, 2000 if fmt in ("mp3", "opus") else 1)
    best = max(_corr(x[1000:6000], y[1000 + lag : 6000 + lag]) for lag in lags)
    assert best > 0.98


def test_lossless_round_trip_is_exact_to_16_bits() -> None:
    x = _tone(32000)
    for fmt in ("wav", "flac"):
        y, sr = load_audio(encode_audio(x, 32000, fmt))
        assert sr == 32000 and len(y) == len(x)
        assert np.max(np.abs(y - x)) < 1.0 / 32767 + 1e-6


def test_supported_formats_reports_mp3_and_pcm() -> None:
    formats = supported_encode_formats()
    assert {"pcm", "wav", "flac", "ogg"} <= set(formats)
    assert "mp3" in formats  # libsndfile >= 1.1 in our environment


def test_stereo_is_averaged_to_mono() -> None:
    sr = 22050
    left = _tone(sr, amp=0.6)
    right = np.zeros_like(left)
    y, _ = load_audio(_write(np.stack([left, right], axis=1), sr, "WAV", "FLOAT"))
    np.testing.assert_allclose(y, left / 2, atol=1e-6)


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 44100, 48000, 96000])
def test_odd_rates_decode_and_resample_to_target(sr: int) -> None:
    x = _tone(sr, seconds=1.0)
    y, out_sr = load_audio(_write(x, sr, "FLAC"), target_sr=16000)
    assert out_sr == 16000
    assert abs(len(y) - 16000) <= 1
    # The 440 Hz tone survives resampling.
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 440) < 2


def test_path_and_file_object_sources(tmp_path: Path) -> None:
    x = _tone(16000)
    path = tmp_path / "a.flac"
    path.write_bytes(_write(x, 16000, "FLAC"))
    from_path, _ = load_audio(path)
    from_str, _ = load_audio(str(path))
    with path.open("rb") as handle:
        from_handle, _ = load_audio(handle)
    np.testing.assert_array_equal(from_path, from_str)
    np.testing.assert_array_equal(from_path, from_handle)


def test_bundled_voice_decodes(voices_dir: Path) -> None:
    y, sr = load_audio(voices_dir / "en_slt" / "ref.flac", target_sr=16000)
    assert sr == 16000 and 4.0 < len(y) / sr < 8.0
    assert -30 < rms_dbfs(y) < -10  # the set is normalised to about -20 dBFS active speech


def _expect(code: str, src: object, **kwargs: object) -> AudioDecodeError:
    with pytest.raises(AudioDecodeError) as info:
        load_audio(src, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code, str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, GSVError)
    return info.value


def test_empty_inputs() -> None:
    _expect("empty_audio", b"")
    _expect("empty_audio", io.BytesIO(b""))
    header_only = _write(np.zeros(0, dtype=np.float32), 16000, "WAV")
    _expect("empty_audio", header_only)


def test_random_bytes_and_text_are_unsupported() -> None:
    rng = np.random.default_rng(0)
    _expect("unsupported_format", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _expect("unsupported_format", b"<html><body>not audio</body></html>" * 20)


def test_missing_file(tmp_path: Path) -> None:
    _expect("file_not_found", tmp_path / "nope.wav")


def test_truncated_files() -> None:
    x = _tone(16000, seconds=1.0)
    wav = _write(x, 16000, "WAV")
    # A WAV cut mid-data decodes what is there (libsndfile trusts the remaining bytes).
    y, _ = load_audio(wav[: 44 + 2 * 4000])
    assert len(y) == 4000
    _expect("unsupported_format", wav[:10])  # not even a header
    flac = _write(x, 16000, "FLAC")
    err = _expect("corrupt_audio", flac[: len(flac) // 2])
    assert "truncated" in str(err)


def test_zero_and_absurd_sample_rates() -> None:
    wav = bytearray(_write(_tone(16000), 16000, "WAV"))
    for rate in (0, 1, 2_000_000):
        wav[24:28] = struct.pack("<I", rate)
        _expect("invalid_sample_rate", bytes(wav))


def test_nan_and_inf_are_rejected() -> None:
    for bad in (np.nan, np.inf):
        x = _tone(16000)
        x[100] = bad
        _expect("non_finite", _write(x, 16000, "WAV", "FLOAT"))


def test_too_long_is_rejected_before_and_after_decoding() -> None:
    x = _tone(16000, seconds=2.0)
    _expect("too_long", _write(x, 16000, "WAV"), max_seconds=1.0)
    _expect("too_long", _write(x, 16000, "OGG", "VORBIS"), max_seconds=1.0)
    y, _ = load_audio(_write(x, 16000, "WAV"), max_seconds=2.0)
    assert len(y) == 32000


def test_silence_decodes_but_rms_flags_it() -> None:
    y, _ = load_audio(_write(np.zeros(16000, dtype=np.float32), 16000, "FLAC"))
    assert len(y) == 16000
    assert rms_dbfs(y) == -120.0
    assert rms_dbfs(_tone(16000, amp=1.0)) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbfs(np.zeros(0)) == -120.0


@pytest.mark.parametrize(
    "sr_in,sr_out", [(16000, 32000), (32000, 16000), (22050, 16000), (44100, 32000), (16000, 16000)]
)
@pytest.mark.parametrize("n", [0, 1, 1001, 16000])
def test_resample_lengths(sr_in: int, sr_out: int, n: int) -> None:
    y = resample(np.zeros(n, dtype=np.float32), sr_in, sr_out)
    assert y.dtype == np.float32
    assert abs(len(y) - n * sr_out / sr_in) <= 1


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError):
        resample(np.zeros(10, dtype=np.float32), 0, 16000)


def test_peak_normalize() -> None:
    x = _tone(16000, amp=0.2)
    y = peak_normalize(x, 0.9)
    assert np.max(np.abs(y)) == pytest.approx(0.9, rel=1e-5)
    np.testing.assert_array_equal(peak_normalize(np.zeros(5, dtype=np.float32)), np.zeros(5))
    with pytest.raises(ValueError):
        peak_normalize(x, 1.5)


def test_pcm_is_clipped_little_endian_int16() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0], dtype=np.float32)
    raw = encode_audio(x, 16000, "pcm")
    assert len(raw) == 2 * len(x)
    decoded = np.frombuffer(raw, dtype="<i2")
    np.testing.assert_array_equal(decoded, [0, 16384, -16384, 32767, -32767, 32767, -32767])
    np.testing.assert_array_equal(to_pcm16(x), decoded)


def test_encode_errors() -> None:
    x = _tone(16000)
    with pytest.raises(AudioEncodeError) as info:
        encode_audio(x, 16000, "aac")  # type: ignore[arg-type]
    assert info.value.code == "unsupported_format"
    with pytest.raises(AudioEncodeError) as info:
        encode_audio(x, 44100, "opus")
    assert info.value.code == "invalid_sample_rate"
    with pytest.raises(AudioEncodeError) as info:
        encode_audio(np.stack([x, x]), 16000, "wav")
    assert info.value.code == "bad_shape"
    bad = x.copy()
    bad[0] = np.nan
    with pytest.raises(AudioEncodeError) as info:
        encode_audio(bad, 16000, "wav")
    assert info.value.code == "non_finite"
