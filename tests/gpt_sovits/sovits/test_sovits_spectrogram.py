"""Spectrogram front end: shapes, values against an independent librosa computation, errors."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from gpt_sovits.sovits.errors import SoVITSInputError
from gpt_sovits.sovits.spectrogram import (
    linear_spectrogram,
    log_mel_spectrogram,
    mel_filterbank,
    spec_to_log_mel,
)


@pytest.mark.parametrize("samples,frames", [(160000, 250), (32000, 50), (32639, 50), (705, 1)])
def test_frame_count_is_samples_over_hop(samples: int, frames: int) -> None:
    spec = linear_spectrogram(torch.randn(samples) * 0.1)
    assert spec.shape == (1, 1025, frames)


def test_matches_numpy_magnitude_of_reflect_padded_frames() -> None:
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(9000) * 0.3
    padded = np.pad(audio, (704, 704), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)  # periodic Hann
    frames = np.stack([padded[i * 640:i * 640 + 2048] * window
                       for i in range((len(padded) - 2048) // 640 + 1)], axis=1)
    ref = np.sqrt(np.abs(np.fft.rfft(frames, axis=0)) ** 2 + 1e-8)
    ours = linear_spectrogram(torch.from_numpy(audio).float())[0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_batch_and_channel_layouts_agree() -> None:
    audio = torch.randn(2, 4000) * 0.1
    batched = linear_spectrogram(audio)
    assert batched.shape == (2, 1025, 6)
    torch.testing.assert_close(linear_spectrogram(audio[1]), batched[1:])
    torch.testing.assert_close(linear_spectrogram(audio.unsqueeze(1)), batched)


def test_silence_gives_the_epsilon_floor() -> None:
    spec = linear_spectrogram(torch.zeros(3200))
    torch.testing.assert_close(spec, torch.full_like(spec, 1e-4))


def test_mel_filterbank_is_librosa_slaney_to_nyquist() -> None:
    basis = mel_filterbank()
    assert basis.shape == (128, 1025)
    np.testing.assert_allclose(basis.numpy(), librosa.filters.mel(sr=32000, n_fft=2048, n_mels=128))
    assert basis[:, -1].sum() == 0  # the Nyquist bin lies on the edge of the top filter


def test_log_mel_of_a_tone_peaks_at_its_band() -> None:
    t = torch.arange(32000) / 32000
    tone = 0.5 * torch.sin(2 * torch.pi * 1000 * t)
    mel = log_mel_spectrogram(tone)
    assert mel.shape == (1, 128, 50)
    centres = librosa.mel_frequencies(n_mels=130, fmin=0, fmax=16000)[1:-1]
    peak = int(mel[0, :, 25].argmax())
    assert abs(centres[peak] - 1000) < 100
    floor = spec_to_log_mel(linear_spectrogram(torch.zeros(6400)))
    assert float(floor.max()) == pytest.approx(np.log(1e-5), abs=1e-3)  # clamp floor


def test_rejects_bad_audio() -> None:
    with pytest.raises(SoVITSInputError, match="too short"):
        linear_spectrogram(torch.zeros(500))
    with pytest.raises(SoVITSInputError, match="floating-point"):
        linear_spectrogram(torch.zeros(4000, dtype=torch.int16))
    with pytest.raises(SoVITSInputError, match=r"\[L\]"):
        linear_spectrogram(torch.zeros(2, 2, 4000))
