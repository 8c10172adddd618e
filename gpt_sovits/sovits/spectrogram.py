"""Spectrograms exactly as GPT-SoVITS computes them (`module/mel_processing.py`).

* `linear_spectrogram`: reflect-pad (n_fft - hop) / 2 on both sides, STFT (Hann, center=False),
  magnitude sqrt(re^2 + im^2 + 1e-8). For 32 kHz audio with hop 640 this gives floor(L / 640)
  frames at 50 Hz. It feeds the style encoder (reference timbre) and the posterior encoder.
* `spec_to_log_mel` / `log_mel_spectrogram`: a librosa (Slaney) mel filterbank over 0 Hz..fmax
  (None = Nyquist, 16 kHz) applied to that magnitude, then log(clamp(., 1e-5)); the S2 mel loss.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gpt_sovits.sovits.errors import SoVITSInputError

MAGNITUDE_EPS = 1e-8
"""Added under the square root so silent bins have a finite log and a defined gradient."""
LOG_CLAMP = 1e-5
"""Floor before the log of the mel energies (dynamic range compression)."""


def _as_batch(audio: Tensor) -> Tensor:
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    elif audio.dim() == 3 and audio.size(1) == 1:
        audio = audio.squeeze(1)
    if audio.dim() != 2:
        raise SoVITSInputError(
            f"audio must be [L], [B, L] or [B, 1, L] float samples in [-1, 1]; got {tuple(audio.shape)}"
        )
    if not audio.is_floating_point():
        raise SoVITSInputError("audio must be a floating-point tensor (int16 PCM: divide by 32768)")
    return audio


def linear_spectrogram(
    audio: Tensor, n_fft: int = 2048, hop_length: int = 640, win_length: int = 2048
) -> Tensor:
    """Linear magnitude spectrogram [B, n_fft // 2 + 1, frames] of float audio [B, L] or [L]."""
    audio = _as_batch(audio)
    pad = (n_fft - hop_length) // 2
    if audio.size(-1) <= pad or audio.size(-1) + 2 * pad < n_fft:
        raise SoVITSInputError(
            f"audio of {audio.size(-1)} samples is too short for one STFT frame "
            f"(need more than {max(pad, n_fft - 2 * pad)}); pass a longer clip"
        )
    padded = F.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(win_length, dtype=audio.dtype, device=audio.device)
    spec = torch.stft(
        padded, n_fft, hop_length=hop_length, win_length=win_length, window=window,
        center=False, normalized=False, onesided=True, return_complex=True,
    )
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAGNITUDE_EPS)


@lru_cache(maxsize=8)
def _mel_basis_np(
    sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> np.ndarray:
    import librosa  # only the training/eval mel path needs it; inference imports stay light

    return librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


def mel_filterbank(
    sampling_rate: int = 32000, n_fft: int = 2048, n_mels: int = 128,
    fmin: float = 0.0, fmax: float | None = None,
) -> Tensor:
    """Librosa's Slaney-normalised mel filterbank [n_mels, n_fft // 2 + 1] as a float32 tensor."""
    return torch.from_numpy(_mel_basis_np(sampling_rate, n_fft, n_mels, fmin, fmax))


def spec_to_log_mel(
    spec: Tensor, sampling_rate: int = 32000, n_mels: int = 128,
    fmin: float = 0.0, fmax: float | None = None,
) -> Tensor:
    """Log-mel [B, n_mels, frames] from a linear magnitude spectrogram [B, bins, frames]."""
    n_fft = (spec.size(-2) - 1) * 2
    basis = mel_filterbank(sampling_rate, n_fft, n_mels, fmin, fmax).to(spec.device, spec.dtype)
    return torch.log(torch.clamp(torch.matmul(basis, spec), min=LOG_CLAMP))


def log_mel_spectrogram(
    audio: Tensor, sampling_rate: int = 32000, n_fft: int = 2048, hop_length: int = 640,
    win_length: int = 2048, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
) -> Tensor:
    """Log-mel of float audio: `linear_spectrogram` then `spec_to_log_mel` (S2 mel loss input)."""
    spec = linear_spectrogram(audio, n_fft, hop_length, win_length)
    return spec_to_log_mel(spec, sampling_rate, n_mels, fmin, fmax)
