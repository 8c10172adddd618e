"""`PosteriorEncoder` (`enc_q`): linear spectrogram -> latent z ~ N(m_q, e^logs_q). Training only.

Released inference files do not contain it; build `SynthesizerTrn(cfg, with_posterior=False)`
to load them strictly.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from gpt_sovits.sovits.commons import sequence_mask
from gpt_sovits.sovits.modules import WN


class PosteriorEncoder(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, hidden_channels: int, kernel_size: int,
        dilation_rate: int, n_layers: int, gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self, x: Tensor, x_lengths: Tensor, g: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns (z, m, logs, mask). The style vector is detached, as in GPT-SoVITS: the
        posterior must not pull the reference encoder towards making its own job easier."""
        if g is not None:
            g = g.detach()
        x_mask = sequence_mask(x_lengths, x.size(2)).unsqueeze(1).to(x.dtype)
        h = self.enc(self.pre(x) * x_mask, x_mask, g=g)
        stats = self.proj(h) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        noise = torch.randn(m.shape, generator=generator, device=m.device, dtype=m.dtype)
        z = (m + noise * torch.exp(logs)) * x_mask
        return z, m, logs, x_mask
