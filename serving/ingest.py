"""Safe processing of an uploaded voice recording: check, decode, clean, cut, choose references.

Uploads are untrusted bytes, so each step bounds what it can cost:
1. the byte size is checked before anything reads the content;
2. decoding runs in a short-lived child interpreter (`serving.decode_worker`) with a wall-clock
   timeout and an address-space limit; a decoder that hangs, explodes in memory or crashes
   takes down only that child;
3. the decoded signal is checked (length, finite values, clipping, channels), resampled to
   32 kHz (model rate) and 16 kHz (VAD, HuBERT, speaker encoder);
4. Silero VAD finds speech; speech is grouped into 3-10 s candidate segments (long stretches are
   cut at their quietest points), each candidate is scored, and the best becomes the reference;
   the next best become auxiliary references.

Every rejection is an `IngestError` with a stable `code` (table in `IngestError`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpt_sovits.audio import resample, rms_dbfs
from gpt_sovits.errors import GSVError

from .segments import REF_MIN_S, Segment, choose_segments
from .settings import Settings
from .vad import VAD_SAMPLE_RATE, SileroVAD, VADParams, default_vad, speech_regions

MODEL_SAMPLE_RATE = 32000
"""Every v2-family model works at 32 kHz; references are stored at this rate."""
MAX_CLIPPED_FRACTION = 0.01
"""Share of active samples stuck at the peak above which an upload counts as heavily clipped."""
SILENT_DBFS = -60.0
"""Uploads quieter than this (RMS) are reported as silent rather than as "no speech"."""
TRIM_MARGIN_S = 0.3
"""Silence kept before the first and after the last speech when the upload is trimmed."""
DC_OFFSET_LIMIT = 0.01
"""Mean level (fraction of full scale) above which a DC blocker is applied."""
EMBED_MAX_SECONDS = 60.0
"""Speech used for the speaker embedding is capped: more adds cost, not accuracy."""

# Decoder codes (gpt_sovits.audio / decode_worker) renamed where ours are more specific.
_DECODE_CODES = {"too_long": "audio_too_long", "non_finite": "non_finite_audio",
                 "file_not_found": "corrupt_audio"}


class IngestError(GSVError, ValueError):
    """An upload was rejected. Codes:

    `empty_upload` (0 bytes), `upload_too_large` (byte cap), `unsupported_format`, `corrupt_audio`,
    `invalid_sample_rate`, `too_many_channels`, `empty_audio` (no samples), `non_finite_audio`,
    `audio_too_long`, `audio_too_short`, `clipped_audio`, `no_speech`, `decode_timeout`.
    """

    code = "invalid_upload"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)
        # The HTTP layer reads `http_status`; size problems are 413, the rest 422 by default.
        self.http_status = 413 if code == "upload_too_large" else 422


@dataclass
class DecodedAudio:
    """Result of the decoding child: mono 32 kHz samples plus facts about the original file."""

    samples: np.ndarray
    info: dict[str, Any]


@dataclass
class IngestResult:
    """What an upload turned into: references at both rates, auxiliaries and statistics."""

    reference_32k: np.ndarray
    reference_16k: np.ndarray
    aux_32k: list[np.ndarray]
    audio_32k: np.ndarray
    """The cleaned upload trimmed to its speech (`stats["source_trim_s"]` says where it starts and
    ends in the original); kept so a voice can be re-processed or fine-tuned later."""
    speech_16k: np.ndarray
    """Detected speech joined together (at most EMBED_MAX_SECONDS), for the speaker encoder."""
    reference_segment: Segment
    aux_segments: list[Segment]
    reference_covers_all_speech: bool
    """True when the reference holds every detected speech region: a transcript of the whole
    upload is then also the transcript of the reference."""
    stats: dict[str, Any] = field(default_factory=dict)
    sample_rate: int = MODEL_SAMPLE_RATE

    def aux_pairs(self) -> list[tuple[np.ndarray, int]]:
        """Auxiliary references as (samples, rate) pairs, the form `VoicePrompt.from_audio` takes."""
        return [(a, MODEL_SAMPLE_RATE) for a in self.aux_32k]


# ----------------------------------------------------------------------------- decoding


class AudioDecoder:
    """Decodes untrusted bytes in a child interpreter bounded in time, memory and concurrency.

    A fresh `python -m serving.decode_worker` per upload costs about 0.3 s of start-up, which
    is small next to computing a voice prompt, and buys full isolation: no state is shared with
    the server, a killed child leaves nothing behind, and no multiprocessing start-method
    subtleties (re-importing `__main__`, forking a threaded server) apply.
    """

    def __init__(self, timeout_s: float, memory_mb: int, max_seconds: float, max_channels: int,
                 max_concurrent: int = 2) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_mb * 1024 * 1024
        self.max_seconds = max_seconds
        self.max_channels = max_channels
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def decode(self, data: bytes) -> DecodedAudio:
        """Samples at 32 kHz plus header facts; raises `IngestError` on any failure."""
        args = [sys.executable, "-m", "serving.decode_worker",
                repr(self.max_seconds), str(self.max_channels), str(self.memory_bytes)]
        with self._slots:
            try:
                proc = subprocess.run(args, input=data, capture_output=True, timeout=self.timeout_s,
                                      env=_child_env(), check=False)
            except subprocess.TimeoutExpired:  # run() has killed the child already
                raise IngestError(f"Decoding took longer than {self.timeout_s:g} s; the file is too large "
                                  "or malformed. Convert it to WAV or FLAC.", code="decode_timeout") from None
        return _parse_answer(proc)


def _child_env() -> dict[str, str]:
    """The server's environment, plus our source root on PYTHONPATH (works uninstalled too)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")  # the child resamples one signal; threads only cost
    return env


def _parse_answer(proc: subprocess.CompletedProcess[bytes]) -> DecodedAudio:
    head, sep, payload = proc.stdout.partition(b"\n")
    try:
        answer = json.loads(head) if sep else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise IngestError(f"The decoder crashed on this file (exit code {proc.returncode}) {detail[0]}; it is "
                          "probably corrupt. Convert it to WAV or FLAC.", code="corrupt_audio")
    if not answer.get("ok"):
        code = str(answer.get("code", "corrupt_audio"))
        raise IngestError(str(answer.get("message", "decoding failed")), code=_DECODE_CODES.get(code, code))
    samples = np.frombuffer(payload, dtype="<f4")
    if samples.shape[0] != answer.get("frames"):
        raise IngestError("The decoder returned an incomplete result; try again or convert the file "
                          "to WAV or FLAC.", code="corrupt_audio")
    return DecodedAudio(samples=samples.astype(np.float32), info=dict(answer.get("info", {})))


# ------------------------------------------------------------------------------- ingest


class Ingestor:
    """Turns upload bytes into an `IngestResult` or raises `IngestError`. Thread-safe."""

    def __init__(self, settings: Settings, vad: SileroVAD | None = None,
                 vad_params: VADParams = VADParams()) -> None:
        self.settings = settings
        self.decoder = AudioDecoder(
            timeout_s=settings.decode_timeout_s, memory_mb=settings.decode_memory_mb,
            max_seconds=settings.max_upload_seconds, max_channels=settings.max_upload_channels,
            max_concurrent=settings.max_concurrent_decodes,
        )
        self._vad = vad
        self.vad_params = vad_params

    @property
    def vad(self) -> SileroVAD:
        if self._vad is None:
            self._vad = default_vad()
        return self._vad

    def ingest(self, data: bytes, filename: str | None = None) -> IngestResult:
        """Check, decode and cut one upload. `filename` only improves messages."""
        self.check_size(len(data), filename)
        decoded = self.decoder.decode(bytes(data))
        audio = self._check_signal(decoded)
        return self.analyse(audio, decoded.info)

    def check_size(self, size: int, filename: str | None = None) -> None:
        """The cheap checks, usable before the body is even read (e.g. from Content-Length)."""
        label = f"'{filename}'" if filename else "The upload"
        if size == 0:
            raise IngestError(f"{label} is empty (0 bytes).", code="empty_upload")
        cap = self.settings.max_upload_bytes
        if size > cap:
            raise IngestError(f"{label} is {size / 1e6:.1f} MB; the limit is {cap / 1e6:.1f} MB. "
                              "Send a shorter recording or a compressed format (flac/ogg/mp3).",
                              code="upload_too_large")

    def _check_signal(self, decoded: DecodedAudio) -> np.ndarray:
        x = decoded.samples
        info = decoded.info
        if x.size == 0:
            raise IngestError("The audio contains no samples.", code="empty_audio")
        if not np.isfinite(x).all():
            raise IngestError("The audio contains NaN or infinite samples.", code="non_finite_audio")
        duration = len(x) / MODEL_SAMPLE_RATE
        if duration > self.settings.max_upload_seconds:
            raise IngestError(f"The audio is {duration:.1f} s long; the limit is "
                              f"{self.settings.max_upload_seconds:g} s. Trim it first.", code="audio_too_long")
        if duration < self.settings.min_upload_seconds:
            raise IngestError(f"The audio is {duration:.1f} s long; at least "
                              f"{self.settings.min_upload_seconds:g} s of speech is needed.", code="audio_too_short")
        if info.get("clipped_fraction", 0.0) > MAX_CLIPPED_FRACTION:
            raise IngestError(f"The recording is heavily clipped ({100 * info['clipped_fraction']:.1f}% of "
                              "samples at full scale); record again with lower input gain.", code="clipped_audio")
        x = _remove_dc_offset(x)
        peak = float(np.max(np.abs(x)))
        if peak > 1.0:  # float files may exceed full scale without being clipped
            x = x * np.float32(0.99 / peak)
        return x.astype(np.float32, copy=False)

    def analyse(self, audio_32k: np.ndarray, info: dict[str, Any] | None = None) -> IngestResult:
        """VAD, segmentation and reference choice on clean 32 kHz audio (decoding already done)."""
        audio_16k = resample(audio_32k, MODEL_SAMPLE_RATE, VAD_SAMPLE_RATE)
        probs = self.vad.probabilities(audio_16k)
        total_s = len(audio_32k) / MODEL_SAMPLE_RATE
        # The last VAD window is zero-padded, so a region may end past the audio: clip it.
        regions = [(s, min(e, total_s)) for s, e in speech_regions(probs, self.vad_params) if s < total_s]
        speech_s = sum(e - s for s, e in regions)
        level = rms_dbfs(audio_32k)
        if not regions:
            why = "The upload is silent" if level < SILENT_DBFS else "No speech was detected in the upload"
            raise IngestError(f"{why}; send a recording of one person speaking.", code="no_speech")
        if speech_s < self.settings.min_upload_seconds:
            raise IngestError(f"Only {speech_s:.1f} s of speech was detected; at least "
                              f"{self.settings.min_upload_seconds:g} s is needed.", code="audio_too_short")
        try:
            ref, aux = choose_segments(audio_32k, MODEL_SAMPLE_RATE, regions, probs,
                                       max_aux=self.settings.max_aux_refs,
                                       max_s=self.settings.reference_max_seconds)
        except ValueError:
            raise IngestError(f"The {speech_s:.1f} s of detected speech cannot form a reference of at least "
                              f"{REF_MIN_S:g} s; send a longer recording.", code="audio_too_short") from None
        reference = ref.cut(audio_32k, MODEL_SAMPLE_RATE)
        covers = not ref.stitched and all(ref.start <= s and e <= ref.end for s, e in regions)
        # Keep the upload from just before the first to just after the last speech (trim).
        trim = (max(0.0, regions[0][0] - TRIM_MARGIN_S), min(total_s, regions[-1][1] + TRIM_MARGIN_S))
        stats = {
            **(info or {}),
            "duration_s": round(len(audio_32k) / MODEL_SAMPLE_RATE, 3),
            "speech_s": round(speech_s, 3),
            "rms_dbfs": round(level, 2),
            "speech_regions": len(regions),
            "reference": ref.as_dict(),
            "aux": [seg.as_dict() for seg in aux],
            "reference_covers_all_speech": covers,
            "source_trim_s": [round(trim[0], 3), round(trim[1], 3)],
        }
        return IngestResult(
            reference_32k=reference,
            reference_16k=resample(reference, MODEL_SAMPLE_RATE, VAD_SAMPLE_RATE),
            aux_32k=[seg.cut(audio_32k, MODEL_SAMPLE_RATE) for seg in aux],
            audio_32k=audio_32k[int(trim[0] * MODEL_SAMPLE_RATE) : int(trim[1] * MODEL_SAMPLE_RATE)].copy(),
            speech_16k=_join_speech(audio_16k, regions, VAD_SAMPLE_RATE, EMBED_MAX_SECONDS),
            reference_segment=ref,
            aux_segments=aux,
            reference_covers_all_speech=covers,
            stats=stats,
        )


def _remove_dc_offset(x: np.ndarray) -> np.ndarray:
    """High-pass (first-order DC blocker, about 25 Hz) only when the signal has a real offset.

    Speech alone can average a few thousandths away from zero; subtracting that mean would
    lift digital silence to about -50 dBFS and hide the pauses we cut at. A genuine offset
    (cheap sound cards) is larger, and a blocker removes it without touching silence for long.
    """
    if abs(float(np.mean(x))) < DC_OFFSET_LIMIT:
        return x
    from scipy.signal import lfilter

    return lfilter([1.0, -1.0], [1.0, -0.995], x).astype(np.float32)


def _join_speech(audio: np.ndarray, regions: list[tuple[float, float]], sr: int, cap_s: float) -> np.ndarray:
    """Speech regions concatenated in time order, at most `cap_s` seconds."""
    parts, total = [], 0
    for start, end in regions:
        piece = audio[int(start * sr) : int(end * sr)]
        parts.append(piece[: max(0, int(cap_s * sr) - total)])
        total += len(parts[-1])
        if total >= cap_s * sr:
            break
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
