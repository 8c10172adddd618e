"""Loudness normalisation and long-silence trimming for the GE2E speaker encoder.

GE2E (resemblyzer) was trained on speech whose pauses were shortened with WebRTC VAD, so we do
the same before embedding: 30 ms VAD decisions (aggressiveness 3), smoothed with an 8-window
moving average, rounded, then dilated by 6 windows on each side so that short pauses survive and
only long silences are cut. webrtcvad comes from the `speaker` extra (`webrtcvad-wheels`).
"""
from __future__ import annotations

import numpy as np

INT16_MAX = 2**15 - 1


class VADUnavailableError(ImportError):
    """webrtcvad is not installed but silence trimming was requested."""


def normalize_volume(wav: np.ndarray, target_dbfs: float, increase_only: bool = True) -> np.ndarray:
    """Scale to `target_dbfs` RMS; with `increase_only`, loud input is left as is."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    if rms <= 0.0:
        return wav
    change_db = target_dbfs - 20.0 * np.log10(rms)
    if change_db < 0 and increase_only:
        return wav
    return (wav * np.float32(10.0 ** (change_db / 20.0))).astype(np.float32)


def _moving_average(flags: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average with zero padding, same length as `flags`."""
    padded = np.concatenate([np.zeros((width - 1) // 2), flags.astype(np.float64), np.zeros(width // 2)])
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2*radius+1)-wide flat structuring element, zero outside."""
    grown = np.convolve(mask.astype(np.int64), np.ones(2 * radius + 1, dtype=np.int64), mode="same")
    return grown > 0


def speech_mask(
    wav: np.ndarray,
    sample_rate: int = 16000,
    window_ms: int = 30,
    smoothing: int = 8,
    max_silence_windows: int = 6,
    mode: int = 3,
) -> np.ndarray:
    """Boolean keep-mask per sample for the first len(wav) - len(wav) % window samples."""
    try:
        import webrtcvad
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise VADUnavailableError(
            "Silence trimming needs webrtcvad: pip install 'gsv-clone[speaker]' (webrtcvad-wheels), "
            "or build the speaker encoder config with trim_silence=False."
        ) from exc
    window = window_ms * sample_rate // 1000
    n_windows = len(wav) // window
    if n_windows == 0:
        return np.zeros(0, dtype=bool)
    pcm = np.round(np.clip(wav[: n_windows * window], -1.0, 1.0) * INT16_MAX).astype("<i2").tobytes()
    vad = webrtcvad.Vad(mode)
    flags = np.array(
        [vad.is_speech(pcm[i * window * 2 : (i + 1) * window * 2], sample_rate) for i in range(n_windows)],
        dtype=bool,
    )
    smoothed = np.round(_moving_average(flags, smoothing)).astype(bool)
    # A structure of max_silence+1 ones centred like scipy's binary_dilation: radius = (k)//2.
    return np.repeat(_dilate(smoothed, (max_silence_windows + 1) // 2), window)


def trim_long_silences(wav: np.ndarray, sample_rate: int = 16000, **kwargs: int) -> np.ndarray:
    """Drop silences longer than the dilation allows; the tail shorter than one VAD window goes too."""
    mask = speech_mask(wav, sample_rate, **kwargs)
    return wav[: len(mask)][mask]
