"""HiFi-GAN discriminators as trained with GPT-SoVITS S2 (`s2D*.pth`, keys `discriminators.N.*`).

One scale discriminator (raw waveform, grouped strided convs) followed by one period discriminator
per period (the waveform folded into [T/p, p] and convolved along time). Unlike the original
HiFi-GAN there is a single scale, no average-pooled copies. All convs are weight-normed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vocoder.errors import VocoderInputError
from vocoder.hifigan import LRELU_SLOPE, same_padding
from vocoder.weight_norm import WNConv1d, WNConv2d

Scores = list[Tensor]
FeatureMaps = list[list[Tensor]]


class DiscriminatorS(nn.Module):
    """Scale discriminator on the raw waveform: [B, 1, T] -> (scores [B, n], feature maps)."""

    def __init__(self) -> None:
        super().__init__()
        # (in, out, kernel, stride, groups); "same" padding for every layer.
        layout = [
            (1, 16, 15, 1, 1),
            (16, 64, 41, 4, 4),
            (64, 256, 41, 4, 16),
            (256, 1024, 41, 4, 64),
            (1024, 1024, 41, 4, 256),
            (1024, 1024, 5, 1, 1),
        ]
        self.convs = nn.ModuleList(
            WNConv1d(cin, cout, k, s, groups=g, padding=same_padding(k))
            for cin, cout, k, s, g in layout
        )
        self.conv_post = WNConv1d(1024, 1, 3, 1, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        return _conv_stack(self.convs, self.conv_post, x)


def _conv_stack(convs: nn.ModuleList, conv_post: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Shared body of both discriminators: leaky-ReLU conv stack, then the score conv.

    Returns the flattened scores and every intermediate map (for the feature-matching loss).
    """
    fmap: list[Tensor] = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class DiscriminatorP(nn.Module):
    """Period discriminator: the waveform reshaped to [B, 1, T/period, period], 2-D convs over time."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        channels = [1, 32, 128, 512, 1024, 1024]
        pad = (same_padding(kernel_size), 0)
        self.convs = nn.ModuleList(
            WNConv2d(channels[i], channels[i + 1], (kernel_size, 1),
                     (stride if i < 4 else 1, 1), padding=pad)
            for i in range(5)
        )
        self.conv_post = WNConv2d(1024, 1, (3, 1), 1, padding=(1, 0))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            # Reflect-pad to a whole number of periods (needs t > pad, true for any real slice).
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)
        return _conv_stack(self.convs, self.conv_post, x)


class MultiPeriodDiscriminator(nn.Module):
    """[DiscriminatorS] + [DiscriminatorP(p) for p in periods], run on real and generated audio."""

    def __init__(self, periods: list[int] | None = None) -> None:
        super().__init__()
        periods = [2, 3, 5, 7, 11] if periods is None else list(periods)
        discs: list[nn.Module] = [DiscriminatorS()]
        discs += [DiscriminatorP(p) for p in periods]
        self.discriminators = nn.ModuleList(discs)

    def forward(self, y: Tensor, y_hat: Tensor) -> tuple[Scores, Scores, FeatureMaps, FeatureMaps]:
        """Returns (real scores, generated scores, real feature maps, generated feature maps)."""
        if y.dim() != 3 or y.shape != y_hat.shape or y.size(1) != 1:
            raise VocoderInputError(
                f"discriminator expects real and generated audio both [B, 1, T]; got "
                f"{tuple(y.shape)} and {tuple(y_hat.shape)}"
            )
        real_scores, fake_scores, real_maps, fake_maps = [], [], [], []
        for disc in self.discriminators:
            score_r, fmap_r = disc(y)
            score_g, fmap_g = disc(y_hat)
            real_scores.append(score_r)
            fake_scores.append(score_g)
            real_maps.append(fmap_r)
            fake_maps.append(fmap_g)
        return real_scores, fake_scores, real_maps, fake_maps
