"""Acoustic front ends of the two speaker encoders, written without librosa/torchaudio at run time.

- `ge2e_mel`: what resemblyzer's GE2E encoder was trained on: a *power* (not log) mel spectrogram,
  40 Slaney-normalised mel bands over 0-8 kHz, 25 ms periodic-Hann windows every 10 ms, centred
  frames with zero padding (librosa.feature.melspectrogram defaults at 16 kHz, n_fft 400, hop 160).
- `kaldi_fbank`: Kaldi `compute-fbank-feats` defaults as used by 3D-Speaker / GPT-SoVITS for
  ERes2NetV2: 25 ms / 10 ms frames that fit entirely in the signal (snip_edges), per-frame DC
  removal, pre-emphasis 0.97, Povey window, 512-point FFT, power spectrum, 80 triangular bands
  on the Kaldi mel scale from 20 Hz to Nyquist, natural log floored at float32 epsilon, no dither.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

# ---------------------------------------------------------------------------------- GE2E mel


def _hz_to_slaney_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's Auditory Toolbox scale: linear (3 bands per 200 Hz) below 1 kHz, log above."""
    freq = np.asarray(freq, dtype=np.float64)
    linear = freq / (200.0 / 3.0)
    log_step = math.log(6.4) / 27.0
    log_part = 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) / log_step
    return np.where(freq >= 1000.0, log_part, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * (200.0 / 3.0))


@lru_cache(maxsize=8)
def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """[n_mels, n_fft//2+1] triangles between 0 Hz and Nyquist, each scaled to unit area
    ("slaney" norm: 2 / bandwidth in Hz), as librosa.filters.mel builds by default."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_mel = np.linspace(_hz_to_slaney_mel(0.0), _hz_to_slaney_mel(sample_rate / 2.0), n_mels + 2)
    edges_hz = _slaney_mel_to_hz(edges_mel)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_freqs[None, :] - lower) / (centre - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (edges_hz[2:] - edges_hz[:-2])[:, None]
    return weights.astype(np.float32)


def ge2e_mel(
    wav: np.ndarray, sample_rate: int = 16000, n_mels: int = 40, window_ms: int = 25, hop_ms: int = 10
) -> np.ndarray:
    """Power mel spectrogram [frames, n_mels] with frames = 1 + len(wav) // hop (centred)."""
    n_fft = sample_rate * window_ms // 1000
    hop = sample_rate * hop_ms // 1000
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    spec = torch.stft(
        x,
        n_fft=n_fft,
        hop_length=hop,
        window=torch.hann_window(n_fft, periodic=True),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # [freq, frames]
    bank = torch.from_numpy(slaney_mel_filterbank(sample_rate, n_fft, n_mels))
    return (bank @ power).T.contiguous().numpy()


# ------------------------------------------------------------------------------- Kaldi fbank


def _kaldi_mel(freq: Tensor | float) -> Tensor:
    return 1127.0 * torch.log1p(torch.as_tensor(freq, dtype=torch.float64) / 700.0)


@lru_cache(maxsize=8)
def kaldi_mel_filterbank(sample_rate: int, padded_window: int, n_mels: int, low_hz: float = 20.0) -> Tensor:
    """[n_mels, padded_window//2 + 1] Kaldi triangles (equal spacing on 1127*ln(1+f/700)).

    Kaldi builds the bank over the first padded_window/2 FFT bins; the Nyquist bin gets weight 0.
    """
    n_bins = padded_window // 2
    bin_hz = sample_rate / padded_window
    mel_low, mel_high = _kaldi_mel(low_hz), _kaldi_mel(sample_rate / 2.0)
    step = (mel_high - mel_low) / (n_mels + 1)
    index = torch.arange(n_mels, dtype=torch.float64)[:, None]
    left, centre, right = mel_low + index * step, mel_low + (index + 1) * step, mel_low + (index + 2) * step
    mel = _kaldi_mel(bin_hz * torch.arange(n_bins, dtype=torch.float64))[None, :]
    rising = (mel - left) / (centre - left)
    falling = (right - mel) / (right - centre)
    bank = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return torch.nn.functional.pad(bank, (0, 1)).to(torch.float32)


def kaldi_fbank(
    wav: Tensor,
    sample_rate: int = 16000,
    n_mels: int = 80,
    frame_ms: float = 25.0,
    shift_ms: float = 10.0,
    preemphasis: float = 0.97,
) -> Tensor:
    """Log mel filterbank [..., frames, n_mels] from float waveform(s) [..., samples].

    frames = 1 + (samples - window) // shift. The waveform is used at the scale it comes in
    (GPT-SoVITS feeds [-1, 1] floats, not Kaldi's int16 scale); the result is float32.
    """
    window = int(sample_rate * frame_ms / 1000)
    shift = int(sample_rate * shift_ms / 1000)
    if wav.shape[-1] < window:
        raise ValueError(f"kaldi_fbank needs at least {window} samples, got {wav.shape[-1]}")
    padded = 1 << (window - 1).bit_length()
    frames = wav.to(torch.float32).unfold(-1, window, shift)  # [..., m, window]
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # x[j-1], x[-1] := x[0]
    frames = frames - preemphasis * previous
    povey = torch.hann_window(window, periodic=False, dtype=torch.float32, device=wav.device).pow(0.85)
    frames = torch.nn.functional.pad(frames * povey, (0, padded - window))
    power = torch.fft.rfft(frames).abs().square()
    bank = kaldi_mel_filterbank(sample_rate, padded, n_mels).to(wav.device)
    energies = power @ bank.T
    return torch.clamp(energies, min=torch.finfo(torch.float32).eps).log()
