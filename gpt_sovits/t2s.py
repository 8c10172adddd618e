"""Text->semantic GPT of GPT-SoVITS v2 (the official `Text2SemanticDecoder`), weight compatible.

The parameter names are the official ones without the `model.` prefix, so an official `.ckpt`
`weight` dict loads with `load_state_dict(strict=True)` after stripping that prefix.

Architecture (reference sections 1.7 and 2.1): phone embedding + projected BERT features, and a
semantic-token embedding, each with its own sinusoidal position counter scaled by a learned
scalar alpha (audio positions restart at 0); a stack of post-LN transformer blocks with a packed
q/k/v projection and a ReLU FFN; a bias-free output projection over 1024 codes + EOS.

There is one attention path. `forward(x, cache=None, ...)` runs teacher-forced training (mask from
`prefix_end`/`key_valid`) and cached prefill/decoding (mask from the `KVCache`) through the same
block code; only where keys come from differs. See `kv_cache` for the slot layout and mask rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt_sovits.config import GPTConfig
from gpt_sovits.kv_cache import KVCache, attention_mask


class T2SInputError(ValueError):
    """Inputs to the T2S model have the wrong shape, dtype or range."""


def sinusoid_table(num_positions: int, dim: int) -> Tensor:
    """`[num_positions, dim]` table: sin on even and cos on odd channels, base 10000."""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return table


class TokenEmbedding(nn.Module):
    """Embedding table; the wrapper exists only to keep the official `word_embeddings` key."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)

    def forward(self, ids: Tensor) -> Tensor:
        return self.word_embeddings(ids)


class SinePosition(nn.Module):
    """Adds alpha * PE[position]; positions are explicit so padded rows keep their own counters."""

    def __init__(self, dim: int, max_positions: int, dropout: float) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        # Derived from the sizes alone, so it is not part of the checkpoint.
        self.register_buffer("pe", sinusoid_table(max_positions, dim), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        return self.dropout(x + self.alpha * self.pe[positions])


def _identity(x: Tensor) -> Tensor:
    return x


class SelfAttention(nn.Module):
    """Multi-head attention with a packed (q, k, v) input projection, as `nn.MultiheadAttention`."""

    def __init__(self, dim: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if dim % n_head:
            raise ValueError(f"hidden_dim {dim} is not divisible by n_head {n_head}")
        self.n_head = n_head
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def in_projection(self, x: Tensor) -> Tensor:
        """Packed q/k/v projection `[B, S, D] -> [B, S, 3D]`; a method so that inference code
        (`gpt_sovits.fast`) can swap in a quantized kernel without touching the attention."""
        return F.linear(x, self.in_proj_weight, self.in_proj_bias)

    def forward(
        self, x: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int
    ) -> Tensor:
        b, s, d = x.shape
        hd = d // self.n_head
        q, k, v = self.in_projection(x).split(d, dim=-1)
        if cache is not None:
            # `KVCache` returns heads already split `[B, n_head, L, head_dim]`; the export
            # wrappers' caches return unsplit `[B, L, D]`, split below like fresh K/V.
            k, v = cache.update(layer, k, v)
        q = q.view(b, s, self.n_head, hd).transpose(1, 2)
        if k.dim() == 3:
            k = k.view(b, k.shape[1], self.n_head, hd).transpose(1, 2)
            v = v.view(b, v.shape[1], self.n_head, hd).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out_proj(out.transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    """Post-LN transformer block: x = LN(x + attn(x)); x = LN(x + FFN(x)), ReLU FFN."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.self_attn = SelfAttention(d, cfg.n_head, cfg.dropout)
        self.linear1 = nn.Linear(d, cfg.ffn_dim)
        self.activation: nn.Module = nn.ReLU()  # a module so INT8 inference can fuse it into linear1
        self.linear2 = nn.Linear(cfg.ffn_dim, d)
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        # Dropout only runs in training: at inference its three module calls per block were
        # measurable per-token overhead of a CPU decode step.
        drop = self.dropout if self.training else _identity
        x = self.norm1(x + drop(self.self_attn(x, mask, cache, layer)))
        ff = self.linear2(drop(self.activation(self.linear1(x))))
        return self.norm2(x + drop(ff))


class BlockStack(nn.Module):
    """Holds the blocks under the official `h.layers.{i}` names."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))


@dataclass
class TeacherForcing:
    """Teacher-forced outputs: `logits[b, t]` predicts `targets[b, t]` where `target_mask[b, t]`."""

    logits: Tensor
    """`[B, T+1, vocab]`: from the last text slot, then from every audio slot."""
    targets: Tensor
    """`[B, T+1]`: `[y_0 .. y_{T_b-1}, EOS]` then EOS padding."""
    target_mask: Tensor
    """`[B, T+1]`: True for the `T_b + 1` real targets of each row."""


class T2SModel(nn.Module):
    """GPT-SoVITS text->semantic decoder. Build from a `GPTConfig`; see the module docstring."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.eos != cfg.vocab_size - 1:
            raise ValueError(f"eos ({cfg.eos}) must be the last token (vocab_size - 1)")
        self.cfg = cfg
        d = cfg.embedding_dim
        self.bert_proj = nn.Linear(cfg.bert_dim, d)
        self.ar_text_embedding = TokenEmbedding(cfg.phoneme_vocab_size, d)
        self.ar_text_position = SinePosition(d, cfg.max_positions, cfg.dropout)
        self.ar_audio_embedding = TokenEmbedding(cfg.vocab_size, d)
        self.ar_audio_position = SinePosition(d, cfg.max_positions, cfg.dropout)
        self.h = BlockStack(cfg)
        self.ar_predict_layer = nn.Linear(cfg.hidden_dim, cfg.vocab_size, bias=False)

    # ---------------------------------------------------------------------- embeddings
    def embed_text(self, phones: Tensor, bert: Tensor, positions: Tensor) -> Tensor:
        """Phones `[B, N]` + BERT `[B, bert_dim, N]` at text positions `[B, N]` -> `[B, N, D]`."""
        x = self.ar_text_embedding(phones) + self.bert_proj(bert.transpose(1, 2))
        return self.ar_text_position(x, positions)

    def embed_audio(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """Semantic tokens `[B, T]` at audio positions `[B, T]` -> `[B, T, D]`."""
        return self.ar_audio_position(self.ar_audio_embedding(tokens), positions)

    # ------------------------------------------------------------------------- forward
    def forward(
        self,
        x: Tensor,
        cache: KVCache | None = None,
        *,
        prefix_end: Tensor | None = None,
        key_valid: Tensor | None = None,
    ) -> Tensor:
        """Run the blocks over embedded slots `x [B, S, D]`; returns hidden states `[B, S, D]`.

        Without a cache, `x` is a whole `[text | audio]` sequence: `prefix_end [B]` gives the
        first audio slot per row and `key_valid [B, S]` marks non-padding slots (defaults: all
        text, no padding). With a cache, `x` holds the next slots and the cache supplies both.
        """
        if cache is None:
            b, s, _ = x.shape
            slots = torch.arange(s, device=x.device)
            if prefix_end is None:
                prefix_end = torch.full((b,), s, dtype=torch.long, device=x.device)
            if key_valid is None:
                key_valid = torch.ones(b, s, dtype=torch.bool, device=x.device)
            mask: Tensor | None = attention_mask(slots, slots, prefix_end, key_valid)
        else:
            if prefix_end is not None or key_valid is not None:
                raise T2SInputError("with a cache, set the layout via cache.set_layout(...)")
            mask = cache.prepare(x.shape[1])
        for i, block in enumerate(self.h.layers):
            x = block(x, mask, cache, i)
        if cache is not None:
            cache.advance()
        return x

    def logits(self, hidden: Tensor) -> Tensor:
        """Next-token logits over the semantic vocabulary (codes + EOS)."""
        return self.ar_predict_layer(hidden)

    # ------------------------------------------------------------------------ training
    def teacher_forcing(
        self,
        phones: Tensor,
        phone_lens: Tensor,
        bert: Tensor,
        semantic: Tensor,
        semantic_lens: Tensor,
    ) -> TeacherForcing:
        """One teacher-forced pass over a right-padded batch (the usual collate layout).

        Text is moved to the left-padded layout used by batched decoding, so the last text slot
        (which predicts y_0, the current official convention) is a real phone in every row and
        per-row positions match inference exactly. Audio stays right-padded with EOS; causality
        keeps its padding out of sight of the real tokens.
        """
        self._check_training_inputs(phones, phone_lens, bert, semantic, semantic_lens)
        b, n = phones.shape
        t = semantic.shape[1]
        dev = phones.device
        text_slots = torch.arange(n, device=dev)
        pad = n - phone_lens
        # Row b's phone k moves to slot pad_b + k; for a real slot, the source index is also
        # its text position. Padding slots read index 0 and are masked out as keys.
        src = (text_slots.unsqueeze(0) - pad.unsqueeze(1)).clamp(min=0)
        phones_l = phones.gather(1, src)
        bert_l = bert.gather(2, src.unsqueeze(1).expand(-1, bert.shape[1], -1))
        x = self.embed_text(phones_l, bert_l, src)

        audio_idx = torch.arange(t, device=dev)
        audio_valid = audio_idx.unsqueeze(0) < semantic_lens.unsqueeze(1)
        y_in = semantic.masked_fill(~audio_valid, self.cfg.eos)
        y = self.embed_audio(y_in, audio_idx.unsqueeze(0).expand(b, -1))

        key_valid = torch.cat([text_slots.unsqueeze(0) >= pad.unsqueeze(1), audio_valid], dim=1)
        prefix_end = torch.full((b,), n, dtype=torch.long, device=dev)
        hidden = self(torch.cat([x, y], dim=1), prefix_end=prefix_end, key_valid=key_valid)
        logits = self.logits(hidden[:, n - 1 :])
        targets = F.pad(y_in, (0, 1), value=self.cfg.eos)
        target_idx = torch.arange(t + 1, device=dev)
        target_mask = target_idx.unsqueeze(0) <= semantic_lens.unsqueeze(1)
        return TeacherForcing(logits, targets, target_mask)

    def training_loss(
        self,
        phones: Tensor,
        phone_lens: Tensor,
        bert: Tensor,
        semantic: Tensor,
        semantic_lens: Tensor,
        *,
        include_padding: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Summed cross-entropy (official `reduction="sum"`) and detached logging metrics.

        The sum runs over the real targets: each row's tokens plus its EOS. The official sum
        also counts the EOS targets at audio padding positions, which makes the loss depend on
        how a batch happens to be padded; `include_padding=True` reproduces that exactly.
        Metrics (tensors, so the caller decides when to sync): `loss_per_token` (mean over real
        targets), `top3_acc` (official metric: top-3 hit rate ignoring EOS targets) and
        `num_targets` (count of real targets).
        """
        out = self.teacher_forcing(phones, phone_lens, bert, semantic, semantic_lens)
        ce = F.cross_entropy(
            out.logits.float().transpose(1, 2), out.targets, reduction="none"
        )  # [B, T+1]
        mask = out.target_mask
        real = (ce * mask).sum()
        loss = ce.sum() if include_padding else real
        with torch.no_grad():
            num = mask.sum()
            per_token = real.detach() / num.clamp(min=1)
            top3 = out.logits.topk(min(3, out.logits.shape[-1]), dim=-1).indices
            hit = (top3 == out.targets.unsqueeze(-1)).any(-1)
            counted = mask & (out.targets != self.cfg.eos)
            acc = (hit & counted).sum() / counted.sum().clamp(min=1)
        metrics = {"loss_per_token": per_token, "top3_acc": acc, "num_targets": num}
        return loss, metrics

    def _check_training_inputs(
        self, phones: Tensor, phone_lens: Tensor, bert: Tensor, semantic: Tensor, lens: Tensor
    ) -> None:
        """Shape/dtype checks only (no value checks: they would force a device sync)."""
        if phones.dim() != 2 or semantic.dim() != 2:
            raise T2SInputError(
                f"phones and semantic must be [B, N] and [B, T], got {tuple(phones.shape)} "
                f"and {tuple(semantic.shape)}"
            )
        b, n = phones.shape
        if bert.shape != (b, self.cfg.bert_dim, n):
            raise T2SInputError(
                f"bert must be [B, {self.cfg.bert_dim}, N] = {(b, self.cfg.bert_dim, n)}, "
                f"got {tuple(bert.shape)}"
            )
        if semantic.shape[0] != b or phone_lens.shape != (b,) or lens.shape != (b,):
            raise T2SInputError("phones, semantic, phone_lens and semantic_lens disagree on B")
        if n > self.cfg.max_positions or semantic.shape[1] > self.cfg.max_positions:
            raise T2SInputError(
                f"sequence longer than max_positions={self.cfg.max_positions}; crop the batch"
            )
        if phones.dtype != torch.long or semantic.dtype != torch.long:
            raise T2SInputError("phones and semantic must be int64 token ids")
