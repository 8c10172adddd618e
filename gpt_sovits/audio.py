"""Audio decoding, resampling, level helpers and encoding.

Everything goes through libsndfile (the `soundfile` package). With libsndfile >= 1.1 that covers
WAV, FLAC, OGG/Vorbis, OGG/Opus and MP3 both ways, so no ffmpeg/audioread fallback is needed;
`supported_encode_formats()` reports what the installed library can actually write.

Untrusted uploads come through `load_audio`, so every failure mode maps to `AudioDecodeError`
with a stable `code` the HTTP layer can turn into a 4xx answer:

| code | meaning |
|---|---|
| `file_not_found` | a path that does not exist |
| `empty_audio` | zero bytes or zero frames |
| `unsupported_format` | bytes libsndfile cannot identify (random data, video, ...) |
| `corrupt_audio` | the container opened but the stream broke while decoding |
| `invalid_sample_rate` | a rate outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] (0 Hz included) |
| `too_long` | longer than the caller's `max_seconds` |
| `non_finite` | NaN or inf samples (possible in float WAV files) |
"""
from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import soundfile as sf
import soxr

from gpt_sovits.errors import GSVError

MIN_SAMPLE_RATE = 4000
"""Lowest accepted input rate: below narrow-band telephony nothing useful remains for a voice."""
MAX_SAMPLE_RATE = 384_000
"""Highest accepted input rate (the top of what studio converters produce)."""

AudioSource = str | Path | bytes | bytearray | memoryview | BinaryIO
EncodeFormat = Literal["wav", "pcm", "flac", "ogg", "opus", "mp3"]

# libsndfile (container, subtype) per output format. `pcm` is handled without libsndfile.
_ENCODERS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# Rates the lossy codecs accept; libsndfile fails late and vaguely otherwise, so check first.
_CODEC_RATES: dict[str, frozenset[int]] = {
    "opus": frozenset({8000, 12000, 16000, 24000, 48000}),
    "mp3": frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}),
}


class AudioDecodeError(GSVError, ValueError):
    """Input audio could not be turned into a usable waveform; `code` says why (module table)."""

    code = "audio_decode_error"


class AudioEncodeError(GSVError, ValueError):
    """A waveform could not be encoded in the requested format."""

    code = "audio_encode_error"


# ----------------------------------------------------------------------------------- decoding


def _read_source(src: AudioSource) -> bytes:
    """Return the raw bytes of `src`; reading everything lets us sniff headers and retry."""
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise AudioDecodeError(f"Audio file '{path}' does not exist.", code="file_not_found")
        return path.read_bytes()
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    if hasattr(src, "read"):
        data = src.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("load_audio needs a binary stream (open the file with 'rb').")
        return bytes(data)
    raise TypeError(f"load_audio: unsupported source type {type(src).__name__}")


def _wav_header_rate(data: bytes) -> int | None:
    """Sample rate from a RIFF/WAVE `fmt ` chunk, or None when the bytes are not such a file.

    libsndfile refuses a 0 Hz header with an opaque "SF_INFO struct incomplete"; reading the
    header ourselves lets us report `invalid_sample_rate` instead of `unsupported_format`.
    """
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return None
    endian = "<" if data[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack(endian + "I", data[pos + 4 : pos + 8])
        if chunk_id == b"fmt " and pos + 16 <= len(data):
            (rate,) = struct.unpack(endian + "I", data[pos + 12 : pos + 16])
            return rate
        pos += 8 + size + (size & 1)
    return None


def _check_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            f"Sample rate {rate} Hz is not usable; expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz. "
            "Re-export the recording at a standard rate such as 16, 32, 44.1 or 48 kHz.",
            code="invalid_sample_rate",
        )


def _open(data: bytes) -> sf.SoundFile:
    try:
        return sf.SoundFile(io.BytesIO(data))
    except sf.LibsndfileError as exc:
        rate = _wav_header_rate(data)
        if rate is not None and rate == 0:
            _check_rate(rate)
        raise AudioDecodeError(
            "Could not recognise the audio format (supported: wav, flac, ogg/vorbis, ogg/opus, mp3). "
            f"Decoder said: {exc.error_string if hasattr(exc, 'error_string') else exc}",
            code="unsupported_format",
        ) from exc


def _decode(data: bytes, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Decode to float32 [frames, channels], validating rate and length before reading samples."""
    with _open(data) as f:
        rate = int(f.samplerate)
        _check_rate(rate)
        # `frames` is exact for PCM containers and an estimate for mp3/ogg; re-checked below.
        if max_seconds is not None and f.frames > 0 and f.frames / rate > max_seconds * 1.05:
            raise AudioDecodeError(
                f"Audio is {f.frames / rate:.1f} s long; the limit is {max_seconds:g} s. Trim it first.",
                code="too_long",
            )
        try:
            samples = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioDecodeError(
                f"The audio stream is damaged or truncated and could not be decoded ({exc}).",
                code="corrupt_audio",
            ) from exc
    return samples, rate


def load_audio(
    src: AudioSource, target_sr: int | None = None, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode `src` into a mono float32 waveform in [-1, 1] and its sample rate.

    Channels are averaged. With `target_sr` the result is resampled (soxr, high quality) and the
    returned rate is `target_sr`. `max_seconds` bounds the decoded duration (checked before the
    samples are read whenever the container states its length). Raises `AudioDecodeError`.
    Silence is valid audio here: callers judge loudness with `rms_dbfs`.
    """
    if target_sr is not None:
        _check_target_rate(target_sr)
    data = _read_source(src)
    if not data:
        raise AudioDecodeError("The audio is empty (0 bytes).", code="empty_audio")
    samples, rate = _decode(data, max_seconds)
    if samples.shape[0] == 0:
        raise AudioDecodeError("The audio contains no samples.", code="empty_audio")
    if max_seconds is not None and samples.shape[0] / rate > max_seconds:
        raise AudioDecodeError(
            f"Audio is {samples.shape[0] / rate:.1f} s long; the limit is {max_seconds:g} s. Trim it first.",
            code="too_long",
        )
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(mono).all():
        raise AudioDecodeError(
            "The audio contains NaN or infinite samples; re-export it as 16-bit PCM.", code="non_finite"
        )
    if target_sr is not None and target_sr != rate:
        return resample(mono, rate, target_sr), target_sr
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def _check_target_rate(rate: int) -> None:
    if not isinstance(rate, (int, np.integer)) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample rate must be an int in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}], got {rate!r}")


# ------------------------------------------------------------------------ resampling and level


def resample(x: np.ndarray, sr_in: int, sr_out: int, quality: str = "HQ") -> np.ndarray:
    """Resample a mono (or [frames, channels]) float waveform with soxr.

    Output length is round(len(x) * sr_out / sr_in) up to one sample. HQ is what librosa's
    default `soxr_hq` uses, so features computed here match librosa-based reference code.
    """
    for rate in (sr_in, sr_out):
        _check_target_rate(rate)
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x.copy()
    if x.shape[0] == 0:
        return x.copy()
    return np.ascontiguousarray(soxr.resample(x, sr_in, sr_out, quality=quality), dtype=np.float32)


def peak_normalize(x: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so that max |x| == `peak`. All-zero input is returned unchanged (no divide by zero)."""
    if not 0.0 < peak <= 1.0:
        raise ValueError(f"peak must be in (0, 1], got {peak}")
    x = np.asarray(x, dtype=np.float32)
    current = float(np.max(np.abs(x))) if x.size else 0.0
    if current == 0.0:
        return x.copy()
    return (x * (peak / current)).astype(np.float32)


def rms_dbfs(x: np.ndarray, floor_db: float = -120.0) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is about -3 dBFS).

    Digital silence and empty input return `floor_db` rather than -inf so the value stays a
    finite float (JSON-safe). Use e.g. `rms_dbfs(x) < -60` to flag silent uploads.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return floor_db
    rms = math.sqrt(float(np.mean(np.square(x))))
    if rms <= 0.0:
        return floor_db
    return max(20.0 * math.log10(rms), floor_db)


# ----------------------------------------------------------------------------------- encoding


def supported_encode_formats() -> list[str]:
    """Output formats the installed libsndfile can write ("pcm" is always available)."""
    available = sf.available_formats()
    names = ["pcm"]
    for name, (container, subtype) in _ENCODERS.items():
        if container in available and subtype in sf.available_subtypes(container):
            names.append(name)
    return names


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Clip to [-1, 1] and convert to little-endian int16 (the `pcm` wire format)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return np.round(clipped * 32767.0).astype("<i2")


def encode_audio(samples: np.ndarray, sr: int, fmt: EncodeFormat) -> bytes:
    """Encode a mono float waveform as `fmt`: wav/flac (16-bit), ogg (Vorbis), opus, mp3, or
    `pcm` (headerless s16le). Samples outside [-1, 1] are clipped. Raises `AudioEncodeError`."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise AudioEncodeError(f"encode_audio expects mono 1-D samples, got shape {x.shape}", code="bad_shape")
    if not np.isfinite(x).all():
        raise AudioEncodeError("Cannot encode NaN or infinite samples.", code="non_finite")
    if not isinstance(sr, (int, np.integer)) or not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioEncodeError(f"Invalid sample rate {sr!r}", code="invalid_sample_rate")
    if fmt == "pcm":
        return to_pcm16(x).tobytes()
    if fmt not in _ENCODERS:
        raise AudioEncodeError(
            f"Unknown format '{fmt}'; choose one of {supported_encode_formats()}", code="unsupported_format"
        )
    if fmt in _CODEC_RATES and sr not in _CODEC_RATES[fmt]:
        raise AudioEncodeError(
            f"{fmt} cannot be written at {sr} Hz; resample to one of {sorted(_CODEC_RATES[fmt])} first.",
            code="invalid_sample_rate",
        )
    container, subtype = _ENCODERS[fmt]
    buf = io.BytesIO()
    try:
        sf.write(buf, np.clip(x, -1.0, 1.0), sr, format=container, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioEncodeError(f"libsndfile could not write {fmt}: {exc}", code="unsupported_format") from exc
    return buf.getvalue()
