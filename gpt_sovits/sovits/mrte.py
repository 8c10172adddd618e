"""MRTE (multi-reference timbre encoder): SSL frames cross-attend to the phone sequence.

query = SSL/semantic frames projected by `c_pre`, key/value = encoded phones projected by
`text_pre`; output = attention + c_pre(ssl) + ge (the style vector broadcast over time), then
`c_post` back to the encoder width. Every frame attends over the *whole* phone sequence, so a
streaming decoder must pass all target phones with every chunk.
"""
from __future__ import annotations

from torch import Tensor, nn

from gpt_sovits.sovits.attentions import MultiHeadAttention


class MRTE(nn.Module):
    def __init__(
        self, content_channels: int = 192, hidden_size: int = 512,
        out_channels: int = 192, n_heads: int = 4,
    ) -> None:
        super().__init__()
        self.cross_attention = MultiHeadAttention(hidden_size, hidden_size, n_heads)
        self.c_pre = nn.Conv1d(content_channels, hidden_size, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden_size, 1)
        self.c_post = nn.Conv1d(hidden_size, out_channels, 1)

    def forward(
        self, ssl_enc: Tensor, ssl_mask: Tensor, text: Tensor, text_mask: Tensor, ge: Tensor
    ) -> Tensor:
        """ssl_enc [B, C, T], text [B, C, N], masks [B, 1, *], ge [B, hidden_size, 1]."""
        attn_mask = text_mask.unsqueeze(2) * ssl_mask.unsqueeze(-1)  # [B, 1, T, N]
        ssl_h = self.c_pre(ssl_enc * ssl_mask)
        text_h = self.text_pre(text * text_mask)
        x = self.cross_attention(ssl_h * ssl_mask, text_h * text_mask, attn_mask) + ssl_h + ge
        return self.c_post(x * ssl_mask)
