"""Voice perturbation for content-encoder training: more apparent speakers from the same recordings.

Why: our encoder learns phones from a handful of voices (mostly TTS engines), and its phone error
rate on unseen voices stays high (docs/base_model_snapshot.md): it learned those voices as much as
the phones. Changing the apparent speaker of each training utterance while keeping its words
pushes the encoder towards what stays constant, the phones. Three cheap changes, each random per
utterance and all label-preserving:

- **vocal-tract/pitch scaling**: resampling by a factor f and reading the result at the original
  rate scales every frequency (f0 and formants) by f and the duration by 1/f: a shorter or longer
  vocal tract, a higher or lower voice, a faster or slower talker (Kaldi's speed perturbation);
- **spectral tilt**: a first-order filter that brightens or darkens the spectrum (microphone and
  voice-quality differences);
- **background noise** at a random signal-to-noise ratio.

The result is rescaled to the input's RMS, so level is not a cue either.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoicePerturbation:
    """Random per-utterance perturbation; `__call__(wav, rng)` returns a new float32 array."""

    prob: float = 0.8
    """Share of utterances perturbed at all (the rest pass unchanged)."""
    scale_min: float = 0.85
    scale_max: float = 1.18
    """Frequency scaling range (f > 1: higher, shorter); drawn log-uniformly."""
    tilt_max: float = 0.6
    """Largest first-order filter coefficient: y[n] = x[n] - a x[n-1], a in [-tilt_max, tilt_max]."""
    snr_min_db: float = 20.0
    snr_max_db: float = 50.0
    """Gaussian noise level range, in dB below the utterance's RMS."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {self.prob}")
        if not 0.5 <= self.scale_min <= self.scale_max <= 2.0:
            raise ValueError(f"need 0.5 <= scale_min <= scale_max <= 2, got {self.scale_min}, {self.scale_max}")
        if not 0.0 <= self.tilt_max < 1.0:
            raise ValueError(f"tilt_max must be in [0, 1), got {self.tilt_max}")
        if self.snr_min_db > self.snr_max_db:
            raise ValueError("snr_min_db must not exceed snr_max_db")

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.size < 2 or rng.random() >= self.prob:
            return wav
        rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
        factor = float(np.exp(rng.uniform(np.log(self.scale_min), np.log(self.scale_max))))
        out = scale_frequencies(wav, factor)
        a = rng.uniform(-self.tilt_max, self.tilt_max)
        out = np.concatenate([out[:1], out[1:] - a * out[:-1]])
        new_rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
        if new_rms > 0 and rms > 0:
            out = out * (rms / new_rms)
            snr = rng.uniform(self.snr_min_db, self.snr_max_db)
            out = out + rng.standard_normal(out.size) * rms * 10.0 ** (-snr / 20.0)
        return np.clip(out, -1.0, 1.0).astype(np.float32)


def scale_frequencies(wav: np.ndarray, factor: float) -> np.ndarray:
    """Every frequency times `factor`, duration divided by it (resample, play at the old rate)."""
    import soxr

    if abs(factor - 1.0) < 1e-6:
        return np.asarray(wav, dtype=np.float32)
    # n samples at rate r read as rate r*factor: resampling r -> r/factor gives n/factor samples
    return soxr.resample(np.asarray(wav, dtype=np.float32), 16000 * factor, 16000).astype(np.float32)
