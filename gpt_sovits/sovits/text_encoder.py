"""TextEncoder (`enc_p`), the SoVITS prior: semantic frames + phones + style -> N(m_p, e^logs_p).

semantic vectors [B, ssl_dim, F] -> `ssl_proj` (1x1) -> `encoder_ssl` (n_layers // 2 blocks);
phones -> `text_embedding` -> `encoder_text` (n_layers blocks); `mrte` fuses the two and the style;
`encoder2` (n_layers // 2 blocks) -> optional speed change -> `proj` to (m_p, logs_p).

Speed is a pure time resampling of the `encoder2` output: linear interpolation to
int(F / speed) + 1 frames, so speed 1.25 turns 80 frames into 65.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt_sovits.config import SoVITSConfig
from gpt_sovits.sovits.attentions import Encoder
from gpt_sovits.sovits.commons import sequence_mask
from gpt_sovits.sovits.mrte import MRTE


def speed_frames(frames: int, speed: float) -> int:
    """Latent frames after the speed change (unchanged at speed 1)."""
    return frames if speed == 1 else int(frames / speed) + 1


class TextEncoder(nn.Module):
    def __init__(self, cfg: SoVITSConfig) -> None:
        super().__init__()
        self.out_channels = cfg.inter_channels
        hidden = cfg.hidden_channels

        def encoder(layers: int) -> Encoder:
            return Encoder(hidden, cfg.filter_channels, cfg.n_heads, layers,
                           cfg.kernel_size, cfg.p_dropout)

        self.ssl_proj = nn.Conv1d(cfg.ssl_dim, hidden, 1)
        self.encoder_ssl = encoder(cfg.n_layers // 2)
        self.encoder_text = encoder(cfg.n_layers)
        self.text_embedding = nn.Embedding(cfg.n_symbols, hidden)
        self.mrte = MRTE(hidden, cfg.mrte_hidden, hidden, cfg.mrte_heads)
        self.encoder2 = encoder(cfg.n_layers // 2)
        self.proj = nn.Conv1d(hidden, cfg.inter_channels * 2, 1)

    def encode_text(self, text: Tensor, text_lengths: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The phone branch alone: (encoded phones [B, hidden, N], mask [B, 1, N]).

        It depends only on the phones, so a streamed segment computes it once for all its
        windows (`forward(..., text_encoded=...)`)."""
        text_mask = sequence_mask(text_lengths, text.size(1)).unsqueeze(1).to(dtype)
        t = self.text_embedding(text).transpose(1, 2)
        return self.encoder_text(t * text_mask, text_mask), text_mask

    def forward(
        self, y: Tensor, y_lengths: Tensor, text: Tensor, text_lengths: Tensor,
        ge: Tensor, speed: float = 1.0, text_encoded: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns (hidden, m_p, logs_p, mask) at the (speed-adjusted) latent frame rate.

        `ge` is the style at MRTE width [B, mrte_hidden, 1]; `text_encoded`, when given, is
        `encode_text(text, text_lengths, ...)` computed earlier.
        """
        y_mask = sequence_mask(y_lengths, y.size(2)).unsqueeze(1).to(y.dtype)
        h = self.ssl_proj(y * y_mask) * y_mask
        h = self.encoder_ssl(h * y_mask, y_mask)
        t, text_mask = text_encoded if text_encoded is not None else self.encode_text(text, text_lengths, y.dtype)
        h = self.mrte(h, y_mask, t, text_mask, ge)
        h = self.encoder2(h * y_mask, y_mask)
        if speed != 1:
            h = F.interpolate(h, size=speed_frames(h.size(-1), speed), mode="linear")
            y_mask = F.interpolate(y_mask, size=h.size(-1), mode="nearest")
        stats = self.proj(h) * y_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        return h, m, logs, y_mask
