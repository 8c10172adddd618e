"""WaveNet-style building blocks of the SoVITS flow and posterior encoder (VITS `modules.py`).

* `WN`: non-causal WaveNet: dilated weight-normed convs with a gated tanh*sigmoid unit, optional
  global conditioning `g` projected once by `cond_layer` and sliced per layer, residual + skip
  outputs (the last layer has only a skip half).
* `ResidualCouplingLayer`: affine coupling that, in the mean-only form used by SoVITS, shifts the
  second channel half by a WN function of the first half (volume preserving, log-det 0).
* `Flip`: reverses channel order between couplings so both halves get transformed.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vocoder.weight_norm import WNConv1d


class WN(nn.Module):
    """Gated dilated-conv stack; keys in_layers.N / res_skip_layers.N / cond_layer (weight-normed)."""

    def __init__(
        self, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int,
        gin_channels: int = 0, p_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("WN kernel_size must be odd to keep the sequence length")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.drop = nn.Dropout(p_dropout)
        if gin_channels:
            self.cond_layer = WNConv1d(gin_channels, 2 * hidden_channels * n_layers, 1)
        for i in range(n_layers):
            dilation = dilation_rate**i
            padding = (kernel_size * dilation - dilation) // 2
            self.in_layers.append(WNConv1d(
                hidden_channels, 2 * hidden_channels, kernel_size,
                dilation=dilation, padding=padding))
            out = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(WNConv1d(hidden_channels, out, 1))

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor | None = None) -> Tensor:
        h = self.hidden_channels
        cond = self.cond_layer(g) if g is not None else None
        output = torch.zeros_like(x)
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            pre = in_layer(x)
            if cond is not None:
                pre = pre + cond[:, 2 * h * i:2 * h * (i + 1)]
            acts = self.drop(torch.tanh(pre[:, :h]) * torch.sigmoid(pre[:, h:]))
            res_skip_acts = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + res_skip_acts[:, :h]) * x_mask
                output = output + res_skip_acts[:, h:]
            else:
                output = output + res_skip_acts
        return output * x_mask


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: x1 <- x1 + m(x0) forward, x1 <- x1 - m(x0) in reverse."""

    def __init__(
        self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int,
        n_layers: int, gin_channels: int = 0, p_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError("coupling channels must be even")
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels, p_dropout)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)
        # Zero init makes every fresh coupling the identity, as in VITS.
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(
        self, x: Tensor, x_mask: Tensor, g: Tensor | None = None, reverse: bool = False
    ) -> Tensor:
        x0, x1 = torch.split(x, [self.half_channels, self.half_channels], dim=1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g=g)
        m = self.post(h) * x_mask
        x1 = (x1 - m) * x_mask if reverse else m + x1 * x_mask
        return torch.cat([x0, x1], dim=1)


class Flip(nn.Module):
    """Reverse the channel order (its own inverse; no parameters)."""

    def forward(
        self, x: Tensor, x_mask: Tensor, g: Tensor | None = None, reverse: bool = False
    ) -> Tensor:
        return torch.flip(x, [1])
