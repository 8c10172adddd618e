"""Loss values on inputs small enough to work out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from vocoder.errors import VocoderInputError
from vocoder.losses import discriminator_loss, feature_loss, generator_loss, kl_loss, mel_loss


def test_discriminator_loss_lsgan() -> None:
    real = [torch.tensor([1.0, 0.0]), torch.tensor([[0.5]])]
    fake = [torch.tensor([0.0, 2.0]), torch.tensor([[1.0]])]
    total, r_terms, f_terms = discriminator_loss(real, fake)
    # D0: mean((1-[1,0])^2)=0.5, mean([0,2]^2)=2; D1: (0.5)^2=0.25, 1
    assert r_terms == [0.5, 0.25] and f_terms == [2.0, 1.0]
    assert float(total) == pytest.approx(3.75)


def test_generator_loss_lsgan() -> None:
    total, terms = generator_loss([torch.tensor([1.0, 3.0]), torch.tensor([0.0])])
    assert [float(t) for t in terms] == [2.0, 1.0]  # mean([0, 4]) and 1
    assert float(total) == pytest.approx(3.0)


def test_feature_loss_doubles_mean_abs_difference_and_detaches_real() -> None:
    real = [[torch.ones(2, 3, requires_grad=True), torch.zeros(4)]]
    fake = [[torch.zeros(2, 3, requires_grad=True), torch.full((4,), -0.5)]]
    loss = feature_loss(real, fake)
    assert float(loss.detach()) == pytest.approx(2 * (1.0 + 0.5))
    loss.backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None


def test_kl_loss_zero_for_matching_gaussians_and_known_value() -> None:
    shape = (1, 2, 3)
    zeros, mask = torch.zeros(shape), torch.ones(1, 1, 3)
    # z_p = m_p and logs_q = logs_p = 0 leaves only -0.5 per element.
    assert float(kl_loss(zeros, zeros, zeros, zeros, mask)) == pytest.approx(-0.5 * 2 * 3 / 3)
    logs_p = torch.full(shape, math.log(2.0))
    z_p = torch.full(shape, 2.0)
    # per element: log 2 - 0 - 0.5 + 0.5 * 4 / 4 = log 2
    mask = torch.tensor([[[1.0, 1.0, 0.0]]])
    value = kl_loss(z_p, zeros, zeros, logs_p, mask)
    assert float(value) == pytest.approx(math.log(2.0) * 2 * 2 / 2)


def test_mel_loss_is_l1() -> None:
    a = torch.zeros(1, 4, 2)
    b = torch.tensor([[[1.0, -1.0], [0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    assert float(mel_loss(a, b)) == pytest.approx(4.0 / 8)
    with pytest.raises(VocoderInputError):
        mel_loss(a, b[:, :3])


def test_multi_resolution_stft_loss_is_zero_for_equal_audio_and_grows_with_error() -> None:
    from vocoder.losses import multi_resolution_stft_loss

    torch.manual_seed(0)
    clean = torch.sin(torch.arange(8000) * 0.07)[None, None] * 0.5
    small = clean + 0.01 * torch.randn_like(clean)
    large = clean + 0.1 * torch.randn_like(clean)
    assert float(multi_resolution_stft_loss(clean, clean)) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(multi_resolution_stft_loss(clean, small)) < float(multi_resolution_stft_loss(clean, large))
    # a pure delay leaves magnitudes nearly unchanged: the loss ignores phase
    assert float(multi_resolution_stft_loss(clean, torch.roll(clean, 3, -1))) < float(multi_resolution_stft_loss(clean, small))
    with pytest.raises(VocoderInputError):
        multi_resolution_stft_loss(clean, clean[..., :-1])
