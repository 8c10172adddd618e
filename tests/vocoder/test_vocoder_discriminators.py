"""Discriminators: output and feature-map shapes, official key count and size."""
from __future__ import annotations

import pytest
import torch

from vocoder.discriminators import DiscriminatorP, DiscriminatorS, MultiPeriodDiscriminator
from vocoder.errors import VocoderInputError


def test_official_v2_layout_on_meta() -> None:
    with torch.device("meta"):
        mpd = MultiPeriodDiscriminator()
    state = mpd.state_dict()
    assert len(state) == 111
    assert sum(p.numel() for p in mpd.parameters()) == 46_747_132
    sizes = [sum(p.numel() for p in d.parameters()) for d in mpd.discriminators]
    assert sizes == [5_641_362] + [8_221_154] * 5
    assert tuple(state["discriminators.0.convs.1.weight_v"].shape) == (64, 4, 41)
    assert tuple(state["discriminators.1.convs.0.weight_g"].shape) == (32, 1, 1, 1)
    assert tuple(state["discriminators.5.conv_post.weight_v"].shape) == (1, 1024, 3, 1)


def test_pro_periods_add_two_discriminators() -> None:
    with torch.device("meta"):
        mpd = MultiPeriodDiscriminator([2, 3, 5, 7, 11, 17, 23])
    assert len(mpd.discriminators) == 8
    assert [d.period for d in mpd.discriminators[1:]] == [2, 3, 5, 7, 11, 17, 23]


def test_period_discriminator_shapes_with_padding() -> None:
    torch.manual_seed(0)
    disc = DiscriminatorP(3)
    score, fmap = disc(torch.randn(2, 1, 1000))  # 1000 is not a multiple of 3: reflect-padded
    rows = 334
    for _ in range(4):
        rows = (rows + 2 * 2 - 5) // 3 + 1
    assert len(fmap) == 6
    assert fmap[0].shape == (2, 32, 112, 3)
    assert fmap[-1].shape == (2, 1, rows, 3)
    assert score.shape == (2, rows * 3)


def test_scale_discriminator_shapes() -> None:
    torch.manual_seed(0)
    score, fmap = DiscriminatorS()(torch.randn(1, 1, 2560))
    assert [f.shape[1] for f in fmap] == [16, 64, 256, 1024, 1024, 1024, 1]
    assert [f.shape[2] for f in fmap] == [2560, 640, 160, 40, 10, 10, 10]
    assert score.shape == (1, 10)


def test_multi_period_returns_one_entry_per_discriminator() -> None:
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator()
    y, y_hat = torch.randn(1, 1, 1280), torch.randn(1, 1, 1280)
    real, fake, real_maps, fake_maps = mpd(y, y_hat)
    assert len(real) == len(fake) == len(real_maps) == len(fake_maps) == 6
    for r, f, rm, fm in zip(real, fake, real_maps, fake_maps):
        assert r.shape == f.shape
        assert [a.shape for a in rm] == [b.shape for b in fm]
    with pytest.raises(VocoderInputError):
        mpd(y, y_hat[..., :-1])
