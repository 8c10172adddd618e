"""Voice activity detection with the Silero VAD model, run through ONNX Runtime on the CPU.

The `silero_vad` wheel ships the model file; we only borrow the file. Importing the package
itself would run `torch.set_num_threads(1)` for the whole process (a side effect in its
`model.py`) and its helpers want torchaudio, so we locate the file with `importlib.util.find_spec`
(which does not execute the package) and drive the network ourselves.

Facts about the model (silero-vad v5/v6 ONNX): at 16 kHz it takes windows of 512 new samples
preceded by the last 64 samples of the previous window, a recurrent state [2, batch, 128] and
the sample rate as an int64 scalar; it returns one speech probability per window (32 ms).
"""
from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt_sovits.errors import GSVError

VAD_SAMPLE_RATE = 16000
WINDOW = 512
"""New samples per model call at 16 kHz (32 ms)."""
CONTEXT = 64
"""Samples of the previous window the model sees again (its receptive-field overlap)."""
FRAME_SECONDS = WINDOW / VAD_SAMPLE_RATE


class VADUnavailableError(GSVError):
    """The Silero model file or ONNX Runtime is not installed."""

    code = "vad_unavailable"


@dataclass(frozen=True)
class VADParams:
    """Hysteresis and clean-up rules that turn frame probabilities into speech regions."""

    threshold: float = 0.5
    """A region starts when the probability reaches this."""
    neg_threshold: float = 0.35
    """...and may end only when it falls below this (hysteresis against flicker)."""
    min_silence_s: float = 0.15
    """Pauses shorter than this do not end a region."""
    min_speech_s: float = 0.25
    """Regions shorter than this are dropped (clicks, breaths)."""


def default_model_path() -> Path:
    """Path of `silero_vad.onnx` inside the installed `silero-vad` wheel (package not imported)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VADUnavailableError(
            "The silero-vad package is not installed; install the serve extra "
            "(pip install -c constraints.txt '.[serve]') or pass a model path."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise VADUnavailableError(f"silero-vad is installed but '{path}' is missing; reinstall it.")
    return path


class SileroVAD:
    """Frame-level speech probabilities for 16 kHz mono audio. Thread-safe (state is per call)."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise VADUnavailableError("onnxruntime is required for voice activity detection.") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # tiny network: threads cost more than they give
        options.inter_op_num_threads = 1
        path = Path(model_path) if model_path is not None else default_model_path()
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def probabilities(self, audio_16k: np.ndarray) -> np.ndarray:
        """One speech probability per 32 ms window; the last partial window is zero-padded."""
        x = np.asarray(audio_16k, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"VAD expects mono audio, got shape {x.shape}")
        n = -(-len(x) // WINDOW)
        padded = np.zeros(CONTEXT + n * WINDOW, dtype=np.float32)
        padded[CONTEXT : CONTEXT + len(x)] = x
        state = np.zeros((2, 1, 128), dtype=np.float32)
        rate = np.array(VAD_SAMPLE_RATE, dtype=np.int64)
        probs = np.empty(n, dtype=np.float32)
        for i in range(n):
            window = padded[None, i * WINDOW : i * WINDOW + CONTEXT + WINDOW]
            out, state = self._session.run(None, {"input": window, "state": state, "sr": rate})
            probs[i] = out[0, 0]
        return probs


def speech_regions(probs: np.ndarray, params: VADParams = VADParams()) -> list[tuple[float, float]]:
    """(start, end) seconds of speech from frame probabilities, with hysteresis and clean-up."""
    regions: list[tuple[float, float]] = []
    start: int | None = None
    quiet = 0
    max_quiet = max(1, int(round(params.min_silence_s / FRAME_SECONDS)))
    for i, p in enumerate(probs):
        if start is None:
            if p >= params.threshold:
                start, quiet = i, 0
            continue
        quiet = quiet + 1 if p < params.neg_threshold else 0
        if quiet >= max_quiet:
            regions.append((start * FRAME_SECONDS, (i - quiet + 1) * FRAME_SECONDS))
            start = None
    if start is not None:
        regions.append((start * FRAME_SECONDS, len(probs) * FRAME_SECONDS))
    return [(s, e) for s, e in regions if e - s >= params.min_speech_s]


_default: SileroVAD | None = None
_default_lock = threading.Lock()


def default_vad() -> SileroVAD:
    """A process-wide model, loaded on first use (about 2 MB; the session is thread-safe)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SileroVAD()
        return _default
