"""MelStyleEncoder (`ref_enc`): reference spectrogram -> one global style vector `ge`.

Despite the name, SoVITS feeds it the *linear* magnitude spectrogram, cut to its first 704 bins
(about 0-11 kHz; all 1025 bins for v1). Steps: two Linear+Mish layers per frame, two gated conv
blocks over time, one residual self-attention layer, a Linear to the style width, and a masked
mean over time. Output [B, out_dim, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LinearNorm(nn.Module):
    """A Linear under the attribute `fc` (that extra level is part of the official keys)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class ConvNorm(nn.Module):
    """A 'same'-padded Conv1d under the attribute `conv`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Conv1dGLU(nn.Module):
    """Residual gated conv: x + dropout(a * sigmoid(b)), [a, b] = conv(x)."""

    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = ConvNorm(channels, 2 * channels, kernel_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv1(x).chunk(2, dim=1)
        return x + self.dropout(a * torch.sigmoid(b))


class StyleAttention(nn.Module):
    """Residual multi-head self-attention over frames ([B, T, C]); logits scaled by sqrt(C)."""

    def __init__(self, n_head: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = nn.Dropout(dropout)
        # The original divides by sqrt(d_model), not sqrt(head_dim); kept for weight parity.
        self.temperature = math.sqrt(d_model)

    def _heads(self, y: Tensor) -> Tensor:
        b, t, c = y.shape
        return y.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)

    def forward(self, x: Tensor, key_padding: Tensor | None = None) -> Tensor:
        """`key_padding` [B, T] is True on padded frames (they get no attention)."""
        b, t, c = x.shape
        q, k, v = (self._heads(proj(x)) for proj in (self.w_qs, self.w_ks, self.w_vs))
        scores = q @ k.transpose(-2, -1) / self.temperature
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        attn = self.attn_dropout(F.softmax(scores, dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, t, c)
        return self.dropout(self.fc(out)) + x


class MelStyleEncoder(nn.Module):
    def __init__(
        self, in_dim: int = 704, hidden_dim: int = 128, out_dim: int = 512,
        kernel_size: int = 5, n_head: int = 2, dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.spectral = nn.Sequential(
            LinearNorm(in_dim, hidden_dim), nn.Mish(), nn.Dropout(dropout),
            LinearNorm(hidden_dim, hidden_dim), nn.Mish(), nn.Dropout(dropout),
        )
        self.temporal = nn.Sequential(
            Conv1dGLU(hidden_dim, kernel_size, dropout), Conv1dGLU(hidden_dim, kernel_size, dropout)
        )
        self.slf_attn = StyleAttention(n_head, hidden_dim, dropout)
        self.fc = LinearNorm(hidden_dim, out_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x [B, in_dim, T], mask [B, 1, T] (1 = valid) or None -> style [B, out_dim, 1]."""
        padding = (mask == 0).squeeze(1) if mask is not None else None  # True on padded frames
        h = self.spectral(x.transpose(1, 2))
        h = self.temporal(h.transpose(1, 2)).transpose(1, 2)
        if padding is not None:
            h = h.masked_fill(padding.unsqueeze(-1), 0.0)
        h = self.fc(self.slf_attn(h, padding))
        if padding is None:
            pooled = h.mean(dim=1)
        else:
            valid = (~padding).sum(dim=1, keepdim=True).to(h.dtype)
            pooled = h.masked_fill(padding.unsqueeze(-1), 0.0).sum(dim=1) / valid
        return pooled.unsqueeze(-1)
