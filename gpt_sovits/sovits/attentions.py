"""VITS-style transformer parts in channel-first layout ([B, C, T]), keys as in GPT-SoVITS.

* `MultiHeadAttention`: 1x1-conv projections (conv_q/k/v/o). With `window_size` it adds Shaw-style
  relative position terms shared by all heads (`emb_rel_k`, `emb_rel_v`, [1, 2w+1, head_dim]):
  query i gets an extra logit q_i . emb_rel_k[j - i + w] for every key j within w frames, and the
  output an extra sum of p_ij * emb_rel_v[j - i + w]; offsets beyond w contribute nothing.
  Masked logits are set to -1e4 (not -inf), so a fully masked row degrades to uniform attention.
* `Encoder`: post-LN blocks (attention -> add -> channel LayerNorm -> conv FFN -> add -> LayerNorm).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASKED_LOGIT = -1e4


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of [B, C, T] (parameters named gamma/beta as in VITS)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.transpose(1, -1), (x.size(1),), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


def _relative_offsets(length: int, window: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Index j - i + window (clamped) and validity |j - i| <= window for a [length, length] grid."""
    pos = torch.arange(length, device=device)
    offset = pos.view(1, -1) - pos.view(-1, 1) + window
    valid = (offset >= 0) & (offset <= 2 * window)
    return offset.clamp(0, 2 * window), valid


class MultiHeadAttention(nn.Module):
    """Multi-head attention from `x` (queries) to `c` (keys/values), both [B, C, T]."""

    def __init__(
        self, channels: int, out_channels: int, n_heads: int,
        p_dropout: float = 0.0, window_size: int | None = None,
    ) -> None:
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels {channels} not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        if window_size is not None:
            scale = self.head_dim**-0.5
            span = 2 * window_size + 1
            self.emb_rel_k = nn.Parameter(torch.randn(1, span, self.head_dim) * scale)
            self.emb_rel_v = nn.Parameter(torch.randn(1, span, self.head_dim) * scale)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def _heads(self, x: Tensor) -> Tensor:
        b, _, t = x.shape
        return x.view(b, self.n_heads, self.head_dim, t).transpose(2, 3)  # [B, H, T, D]

    def forward(self, x: Tensor, c: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """`attn_mask` [B, 1, T_x, T_c] (1 = attend, 0 = blocked) or None."""
        q = self._heads(self.conv_q(x)) / math.sqrt(self.head_dim)
        k = self._heads(self.conv_k(c))
        v = self._heads(self.conv_v(c))
        scores = q @ k.transpose(-2, -1)
        if self.window_size is not None:
            if q.size(2) != k.size(2):
                raise ValueError("relative attention needs self-attention (equal lengths)")
            offset, valid = _relative_offsets(q.size(2), self.window_size, q.device)
            rel = q @ self.emb_rel_k.transpose(1, 2).unsqueeze(0)  # [B, H, T, 2w+1]
            rel = rel.gather(-1, offset.expand(*rel.shape[:2], -1, -1))  # [B, H, T, T]
            scores = scores + rel * valid
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask == 0, MASKED_LOGIT)
        p = self.drop(F.softmax(scores, dim=-1))
        out = p @ v
        if self.window_size is not None:
            out = out + self._relative_values(p)
        b, h, t, d = out.shape
        return self.conv_o(out.transpose(2, 3).reshape(b, h * d, t))

    def _relative_values(self, p: Tensor) -> Tensor:
        """sum_j p_ij * emb_rel_v[j - i + w] over the |j - i| <= w band."""
        w = self.window_size
        assert w is not None
        t = p.size(-1)
        padded = F.pad(p, (w, w))  # column j + w of `padded` is key j
        rows = torch.arange(t, device=p.device).view(-1, 1)
        band_index = rows + torch.arange(2 * w + 1, device=p.device).view(1, -1)  # [T, 2w+1]
        band = padded.gather(-1, band_index.expand(*p.shape[:2], -1, -1))  # [B, H, T, 2w+1]
        return band @ self.emb_rel_v.squeeze(0)


class FFN(nn.Module):
    """Two 'same'-padded convs with ReLU, masked before each conv and at the output."""

    def __init__(
        self, in_channels: int, out_channels: int, filter_channels: int,
        kernel_size: int, p_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        x = torch.relu(self.conv_1(F.pad(x * x_mask, self.pad)))
        x = self.conv_2(F.pad(self.drop(x) * x_mask, self.pad))
        return x * x_mask


class Encoder(nn.Module):
    """Stack of post-LN self-attention blocks with relative positions (window 4 by default)."""

    def __init__(
        self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
        kernel_size: int = 1, p_dropout: float = 0.0, window_size: int | None = 4,
    ) -> None:
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(MultiHeadAttention(
                hidden_channels, hidden_channels, n_heads, p_dropout, window_size))
            self.norm_layers_1.append(ChannelLayerNorm(hidden_channels))
            self.ffn_layers.append(FFN(
                hidden_channels, hidden_channels, filter_channels, kernel_size, p_dropout))
            self.norm_layers_2.append(ChannelLayerNorm(hidden_channels))

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        """x [B, C, T], x_mask [B, 1, T] float (1 = valid)."""
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2
        ):
            x = norm1(x + self.drop(attn(x, x, attn_mask)))
            x = norm2(x + self.drop(ffn(x, x_mask)))
        return x * x_mask
