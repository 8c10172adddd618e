"""Small `nn.Module`s that give each exported graph named tensor inputs and outputs.

Each wrapper calls the real model's own submodules; nothing is re-implemented. The GPT wrappers
run `T2SModel.forward` with a cache object that follows the `KVCache` protocol
(`prepare` / `update` / `advance`) but takes its past keys/values from graph inputs and hands the
new ones out as graph outputs, so the exported attention is the model's one attention path.

Cache layout across the graph boundary (batch 1): one `past_k.{i}` / `past_v.{i}` input per layer
of shape `[1, past_len, hidden]`, and one `new_k.{i}` / `new_v.{i}` output `[1, 1, hidden]` per
layer. The runtime keeps a `[1, max_len, hidden]` buffer per layer: the filled prefix is passed
in without a copy and the step writes its new slot straight into the buffer (IO binding), so no
step ever copies the whole cache on the host.

SoVITS chunk decoding takes its prior noise as an input (so every runtime can reproduce the
PyTorch decode sample for sample) and a `[frames, frames_out]` resampling matrix that implements
the speed change (identity at speed 1). The matrix is applied to the prior's mean and log-scale
after the 1x1 `proj`; linear interpolation commutes with that per-frame affine map, so this equals
interpolating before `proj` as `SynthesizerTrn.decode` does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt_sovits.kv_cache import attention_mask
from gpt_sovits.sovits.attentions import ChannelLayerNorm
from gpt_sovits.sovits.model import FRAMES_PER_TOKEN, SynthesizerTrn
from gpt_sovits.t2s import T2SModel


def _positions(x: Tensor) -> Tensor:
    """`[1, L]` positions 0..L-1 for ids `x [1, L]`, traced from the input's shape."""
    return torch.cumsum(torch.ones_like(x), dim=1) - 1


def _lengths(x: Tensor) -> Tensor:
    """`[B]` length of the last axis of `x [B, L]` or `[B, C, L]`, computed in the graph (a
    Python int from `x.shape` would be baked into the export as a constant)."""
    row = x[:, 0] if x.dim() == 3 else x
    return torch.ones_like(row, dtype=torch.long).sum(dim=1)


class _PrefillCache:
    """Cache protocol for the prompt pass: no past; records every layer's keys/values."""

    def __init__(self, prefix_end: Tensor, seq: Tensor) -> None:
        self.prefix_end = prefix_end
        self.seq = seq
        self.k: list[Tensor] = []
        self.v: list[Tensor] = []

    def prepare(self, num_new: int) -> Tensor:
        slots = _positions(self.seq)[0]
        return attention_mask(slots, slots, self.prefix_end, torch.ones_like(self.seq, dtype=torch.bool))

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k.append(k)
        self.v.append(v)
        return k, v

    def advance(self) -> None:
        pass


class _StepCache:
    """Cache protocol for one new slot: past from inputs, new keys/values recorded as outputs."""

    def __init__(self, past: tuple[Tensor, ...]) -> None:
        self.past = past
        self.new: list[Tensor] = []

    def prepare(self, num_new: int) -> None:
        return None  # one query, batch 1, no padding: it may see every key

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.new.extend([k, v])
        return (torch.cat([self.past[2 * layer], k], dim=1),
                torch.cat([self.past[2 * layer + 1], v], dim=1))

    def advance(self) -> None:
        pass


class T2SPrefill(nn.Module):
    """phones [1, N], bert [1, bert_dim, N], prompt [1, P] -> logits [1, V], keys, values
    `[n_layer, 1, N + P, hidden]` (text is a bidirectional prefix, prompt audio is causal)."""

    def __init__(self, model: T2SModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, phones: Tensor, bert: Tensor, prompt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.model
        x = torch.cat([m.embed_text(phones, bert, _positions(phones)),
                       m.embed_audio(prompt, _positions(prompt))], dim=1)
        seq = torch.cat([phones, prompt], dim=1)
        cache = _PrefillCache(_lengths(phones), seq)
        hidden = m(x, cache=cache)  # type: ignore[arg-type]
        return m.logits(hidden[:, -1]), torch.stack(cache.k), torch.stack(cache.v)


class T2SStep(nn.Module):
    """token [1, 1], audio_pos [1, 1], past_k.i / past_v.i [1, T, hidden] per layer ->
    logits [1, V], new_k.i / new_v.i [1, 1, hidden] per layer (flattened k0, v0, k1, v1, ...)."""

    def __init__(self, model: T2SModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: Tensor, audio_pos: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        cache = _StepCache(past)
        hidden = m(m.embed_audio(token, audio_pos), cache=cache)  # type: ignore[arg-type]
        return (m.logits(hidden[:, -1]), *cache.new)


class SoVITSChunkDecode(nn.Module):
    """codes [1, 1, T], phones [1, N], ge [1, gin, 1], noise [1, inter, F'], noise_scale [1],
    resample [2T, F'] -> audio [1, 1, F' * hop]. Same maths as `SynthesizerTrn.decode`."""

    def __init__(self, sovits: SynthesizerTrn) -> None:
        super().__init__()
        self.sovits = sovits

    def forward(self, codes: Tensor, phones: Tensor, ge: Tensor, noise: Tensor,
                noise_scale: Tensor, resample: Tensor) -> Tensor:
        s = self.sovits
        quantized = s.quantizer.decode(codes.transpose(0, 1))  # [1, ssl_dim, T]
        b, d, t = quantized.shape
        quantized = quantized.unsqueeze(-1).expand(b, d, t, FRAMES_PER_TOKEN).reshape(b, d, -1)
        _, m_p, logs_p, _ = s.enc_p(quantized, _lengths(quantized), phones, _lengths(phones),
                                    s.mrte_style(ge), 1.0)
        m_p = torch.matmul(m_p, resample)
        logs_p = torch.matmul(logs_p, resample)
        z_p = m_p + noise * torch.exp(logs_p) * noise_scale
        y_mask = torch.ones_like(z_p[:, :1])
        z = s.flow(z_p, y_mask, g=ge, reverse=True)
        return s.dec(z * y_mask, g=ge)


class RefStyle(nn.Module):
    """Reference linear spectrogram [1, spec_channels, frames] -> style `ge` [1, gin, 1]."""

    def __init__(self, sovits: SynthesizerTrn) -> None:
        super().__init__()
        self.sovits = sovits

    def forward(self, spec: Tensor) -> Tensor:
        return self.sovits.style(spec)


class PromptCodes(nn.Module):
    """HuBERT features [1, ssl_dim, T50] -> prompt semantic codes [1, 1, T50 // 2]."""

    def __init__(self, sovits: SynthesizerTrn) -> None:
        super().__init__()
        self.sovits = sovits

    def forward(self, ssl: Tensor) -> Tensor:
        return self.sovits.extract_latent(ssl)


def resample_matrix(frames: int, frames_out: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """`[frames, frames_out]` matrix M with `x @ M == F.interpolate(x, frames_out, mode="linear")`."""
    if frames == frames_out:
        return torch.eye(frames, dtype=dtype)
    eye = torch.eye(frames, dtype=torch.float32).unsqueeze(0)
    return F.interpolate(eye, size=frames_out, mode="linear")[0].to(dtype)


class _FixedWidthLayerNorm(ChannelLayerNorm):
    """`ChannelLayerNorm` with its width as a Python int: the tracing exporter records
    `x.size(1)` as a graph value, and ONNX LayerNormalization needs a constant shape."""

    def __init__(self, norm: ChannelLayerNorm) -> None:
        nn.Module.__init__(self)
        self.eps = norm.eps
        self.gamma, self.beta = norm.gamma, norm.beta
        self.width = int(norm.gamma.numel())

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.transpose(1, -1), (self.width,), self.gamma, self.beta, self.eps).transpose(1, -1)


def freeze_layer_norm_widths_(module: nn.Module) -> int:
    """In place, on an export copy: swap every `ChannelLayerNorm` for `_FixedWidthLayerNorm`."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is ChannelLayerNorm:
                setattr(parent, name, _FixedWidthLayerNorm(child))
                count += 1
    return count
