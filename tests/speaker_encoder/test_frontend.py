"""Front ends of the speaker encoders against reference implementations (librosa, kaldi-native-fbank)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gpt_sovits.audio import load_audio
from speaker_encoder.frontend import ge2e_mel, kaldi_fbank, kaldi_mel_filterbank, slaney_mel_filterbank


@pytest.fixture(scope="module")
def speech(voices_dir: Path) -> np.ndarray:
    wav, sr = load_audio(voices_dir / "en_allison" / "ref.flac")
    assert sr == 16000
    return wav


def test_slaney_filterbank_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    np.testing.assert_allclose(slaney_mel_filterbank(16000, 400, 40), expected, atol=1e-7)


def test_ge2e_mel_matches_librosa_melspectrogram(speech: np.ndarray) -> None:
    librosa = pytest.importorskip("librosa")
    expected = librosa.feature.melspectrogram(y=speech, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    ours = ge2e_mel(speech)
    assert ours.shape == expected.shape == (1 + len(speech) // 160, 40)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


def test_kaldi_fbank_shape_and_tone_peak() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    feats = kaldi_fbank(tone)
    assert feats.shape == (1 + (sr - 400) // 160, 80) and feats.dtype == torch.float32
    # The loudest band is the one whose triangle peaks nearest 1 kHz.
    bank = kaldi_mel_filterbank(sr, 512, 80)
    expected_band = int(torch.argmax(bank[:, round(1000 / (sr / 512))]))
    assert int(torch.argmax(feats.mean(dim=0))) == expected_band
    batch = kaldi_fbank(torch.stack([tone, tone * 0.5]))
    assert batch.shape == (2, *feats.shape)
    torch.testing.assert_close(batch[0], feats)
    # Halving the amplitude lowers every log power by ln(4) (bands above the epsilon floor).
    audible = batch[1] > float(np.log(np.finfo(np.float32).eps)) + 5.0
    assert audible.float().mean() > 0.2
    diff = (batch[0] - batch[1])[audible]
    torch.testing.assert_close(diff, torch.full_like(diff, np.log(4.0)), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="at least 400"):
        kaldi_fbank(torch.zeros(100))


def test_kaldi_fbank_matches_kaldi_native_fbank(speech: np.ndarray) -> None:
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    online = knf.OnlineFbank(opts)
    online.accept_waveform(16000, speech.tolist())
    online.input_finished()
    expected = np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])
    ours = kaldi_fbank(torch.from_numpy(speech)).numpy()
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=2e-3)
    assert np.abs(ours - expected).mean() < 1e-4
