"""Audio output encoders: whole files in every supported format, and streaming WAV/PCM.

Streaming is limited to formats whose bytes can be sent as they are produced without ever going
back: raw PCM, and WAV with a header whose length fields say "unknown" (0xFFFFFFFF, the value
that players and ffmpeg treat as "read until the end"). FLAC/OGG/MP3 encoders in libsndfile
rewrite their headers on close, so those formats are produced as whole files only.

Sample-rate conversion uses soxr; the streaming path keeps one `soxr.ResampleStream` per request
so that a resampled stream joins up to the same signal as resampling the whole file at once.
"""
from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from gpt_sovits.errors import GSVError

AudioFormat = Literal["wav", "pcm", "flac", "ogg", "mp3", "opus"]

STREAMABLE_FORMATS: frozenset[str] = frozenset({"wav", "pcm"})
UNKNOWN_LENGTH = 0xFFFFFFFF
"""RIFF/data size for a WAV stream whose length is not known when the header is sent."""

MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "pcm": "audio/L16",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
}

# format name -> (libsndfile container, subtype)
_SOUNDFILE_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class UnsupportedFormatError(GSVError):
    """The requested output format cannot be produced by this installation or in this mode."""

    code = "unsupported_format"


@functools.cache
def supported_formats() -> frozenset[str]:
    """Formats this process can write: libsndfile builds differ (MP3 needs libsndfile >= 1.1)."""
    available = sf.available_formats()
    out = {"pcm"}
    for name, (container, subtype) in _SOUNDFILE_FORMATS.items():
        if container in available and subtype in sf.available_subtypes(container):
            out.add(name)
    return frozenset(out)


def check_format(fmt: str, *, stream: bool) -> None:
    """Raise `UnsupportedFormatError` with what to use instead when `fmt` cannot be produced."""
    if fmt not in supported_formats():
        raise UnsupportedFormatError(
            f"Output format '{fmt}' is not available with this libsndfile build; "
            f"use one of {sorted(supported_formats())}."
        )
    if stream and fmt not in STREAMABLE_FORMATS:
        raise UnsupportedFormatError(
            f"Streaming supports only {sorted(STREAMABLE_FORMATS)}; request format 'wav' or 'pcm' "
            f"with stream=true, or stream=false for '{fmt}'."
        )


def output_rate(fmt: str, requested: int | None, native: int) -> int:
    """The sample rate the response will have: Opus only allows a few rates, so snap up to one."""
    rate = requested or native
    if fmt == "opus" and rate not in OPUS_RATES:
        rate = next((r for r in OPUS_RATES if r >= rate), 48000)
    return rate


def to_pcm16(samples: np.ndarray) -> bytes:
    """float [-1, 1] -> little-endian signed 16-bit bytes (clipped, rounded)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return np.round(clipped * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, num_samples: int | None = None, channels: int = 1) -> bytes:
    """A 44-byte PCM16 WAV header; `num_samples=None` writes the "unknown length" sizes."""
    block = channels * 2
    if num_samples is None:
        data_size = riff_size = UNKNOWN_LENGTH
    else:
        data_size = num_samples * block
        riff_size = min(36 + data_size, UNKNOWN_LENGTH)
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
        + b"data" + struct.pack("<I", min(data_size, UNKNOWN_LENGTH))
    )


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Whole-signal resampling (identity when the rates match)."""
    if sr_in == sr_out:
        return np.asarray(samples, dtype=np.float32)
    return soxr.resample(np.asarray(samples, dtype=np.float32), sr_in, sr_out).astype(np.float32)


def encode_file(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode a whole mono float signal as `fmt` (already at its output rate)."""
    check_format(fmt, stream=False)
    if fmt == "pcm":
        return to_pcm16(samples)
    container, subtype = _SOUNDFILE_FORMATS[fmt]
    buf = io.BytesIO()
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    if data.size == 0:
        data = np.zeros(1, dtype=np.float32)  # some encoders refuse empty input
    sf.write(buf, data, sample_rate, format=container, subtype=subtype)
    return buf.getvalue()


@dataclass
class StreamEncoder:
    """Turns float chunks at `in_rate` into bytes of a WAV or PCM stream at `out_rate`.

    One instance per request (it owns the resampler state). Call `header()` once, `encode()` per
    chunk and `finish()` at the end; the concatenation is a valid file/stream.
    """

    fmt: str
    in_rate: int
    out_rate: int

    def __post_init__(self) -> None:
        check_format(self.fmt, stream=True)
        self._resampler = (
            soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32")
            if self.in_rate != self.out_rate
            else None
        )
        self.samples_out = 0

    def header(self) -> bytes:
        return wav_header(self.out_rate) if self.fmt == "wav" else b""

    def encode(self, samples: np.ndarray) -> bytes:
        return self._emit(np.asarray(samples, dtype=np.float32), last=False)

    def finish(self) -> bytes:
        return self._emit(np.zeros(0, dtype=np.float32), last=True)

    def _emit(self, samples: np.ndarray, *, last: bool) -> bytes:
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        self.samples_out += int(samples.size)
        return to_pcm16(samples) if samples.size else b""


def decode_pcm16(data: bytes) -> np.ndarray:
    """Inverse of `to_pcm16` (used by clients and tests)."""
    return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.float32) / 32767.0
