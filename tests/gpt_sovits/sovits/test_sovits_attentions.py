"""Relative-position attention and the VITS encoder, checked against a direct loop formulation."""
from __future__ import annotations

import math

import pytest
import torch

from gpt_sovits.sovits.attentions import ChannelLayerNorm, Encoder, MultiHeadAttention


def loop_attention(m: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Textbook per-(i, j) relative attention (Shaw et al.), heads sharing the relative tables."""
    _, c, t = x.shape
    h, d, w = m.n_heads, m.head_dim, m.window_size
    q = m.conv_q(x)[0].view(h, d, t)
    k = m.conv_k(x)[0].view(h, d, t)
    v = m.conv_v(x)[0].view(h, d, t)
    out = torch.zeros(h, d, t)
    for head in range(h):
        for i in range(t):
            logits = torch.empty(t)
            for j in range(t):
                rel = m.emb_rel_k[0, j - i + w] if abs(j - i) <= w else torch.zeros(d)
                logits[j] = q[head, :, i] @ (k[head, :, j] + rel) / math.sqrt(d)
            logits = logits.masked_fill(mask[i] == 0, -1e4)
            p = torch.softmax(logits, dim=0)
            for j in range(t):
                rel_v = m.emb_rel_v[0, j - i + w] if abs(j - i) <= w else torch.zeros(d)
                out[head, :, i] += p[j] * (v[head, :, j] + rel_v)
    return m.conv_o(out.reshape(1, c, t))


@pytest.mark.parametrize("length", [3, 12])
def test_relative_attention_matches_loop(length: int) -> None:
    torch.manual_seed(0)
    m = MultiHeadAttention(8, 8, 2, window_size=4)
    x = torch.randn(1, 8, length)
    valid = torch.ones(length)
    valid[-1] = 0
    mask = valid.view(1, 1, 1, -1) * valid.view(1, 1, -1, 1)
    torch.testing.assert_close(m(x, x, mask), loop_attention(m, x, mask[0, 0]), atol=1e-5, rtol=1e-5)


def test_channel_layer_norm_normalises_channels() -> None:
    norm = ChannelLayerNorm(6)
    y = norm(torch.randn(2, 6, 5) * 3 + 1)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)


def test_encoder_ignores_padding() -> None:
    torch.manual_seed(0)
    enc = Encoder(16, 32, 2, 2, kernel_size=3).eval()
    x = torch.randn(1, 16, 10)
    mask = torch.ones(1, 1, 10)
    mask[..., 7:] = 0
    noisy = x.clone()
    noisy[..., 7:] = 100.0
    a, b = enc(x, mask), enc(noisy, mask)
    torch.testing.assert_close(a[..., :7], b[..., :7])
    assert torch.all(a[..., 7:] == 0)
    trimmed = enc(x[..., :7], torch.ones(1, 1, 7))
    torch.testing.assert_close(a[..., :7], trimmed, atol=1e-5, rtol=1e-5)
