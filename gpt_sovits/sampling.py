"""Next-token sampling for the T2S decoder, batched and on device.

Order and semantics follow the official `logits_to_probs` (reference section 1.7, step 7):

1. repetition penalty over every token already in the row's sequence, prompt included: a seen
   token's logit is multiplied by the penalty if negative, divided by it otherwise (once per
   distinct token). Written *in place*, because the official EOS-by-argmax check reads the
   penalised logits;
2. top-p (only where top_p < 1): keep the smallest head of the sorted distribution whose
   cumulative probability stays <= p, and always the most likely token;
3. divide by max(temperature, 1e-5);
4. top-k: drop logits below the k-th largest (ties at the pivot survive);
5. softmax;
6. sample as argmax(probs / Exponential(1) noise), which is equivalent to multinomial sampling
   but needs no host sync. Each row draws its noise from its own `torch.Generator`, so a row's
   result does not depend on which other rows share its batch.

While a row has produced fewer than `min_new_tokens` tokens its EOS logit is set to -inf, the
equivalent of the official "drop the EOS column" for the first 11 steps.
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


class SamplingParamsError(ValueError):
    """A sampling knob is out of range."""


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens for one request (defaults: official `TTS.run` / api_v2)."""

    top_k: int = 15
    """Keep the k most likely tokens; 1 is greedy decoding."""
    top_p: float = 1.0
    """Nucleus mass in (0, 1]; 1 disables the filter."""
    temperature: float = 1.0
    """Logit divisor (> 0); values near 0 approach greedy decoding."""
    repetition_penalty: float = 1.35
    """>= 1; applied to every token already in the sequence, prompt included."""
    seed: int | None = None
    """Seed of this request's RNG; None draws a fresh random seed."""
    max_new_tokens: int = 1500
    """Hard cap on generated tokens (1500 = 60 s of audio)."""
    min_new_tokens: int = 11
    """EOS is forbidden until this many tokens exist (official: 11)."""

    def __post_init__(self) -> None:
        checks = [
            (self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
            (0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.temperature > 0.0, f"temperature must be > 0, got {self.temperature}"),
            (
                self.repetition_penalty >= 1.0,
                f"repetition_penalty must be >= 1, got {self.repetition_penalty}",
            ),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.min_new_tokens >= 0, f"min_new_tokens must be >= 0, got {self.min_new_tokens}"),
            (self.seed is None or self.seed >= 0, f"seed must be >= 0 or None, got {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SamplingParamsError(message)

    @classmethod
    def greedy(cls, **overrides: object) -> "SamplingParams":
        """Deterministic decoding: always the most likely (penalised) token."""
        return cls(**{"top_k": 1, **overrides})  # type: ignore[arg-type]


def apply_repetition_penalty_(logits: Tensor, seen: Tensor, penalty: Tensor) -> Tensor:
    """In place: penalise logits `[B, V]` of tokens marked in `seen [B, V]` by `penalty [B]`."""
    p = penalty.unsqueeze(1)
    penalised = torch.where(logits < 0, logits * p, logits / p)
    return logits.copy_(torch.where(seen, penalised, logits))


def top_p_filter(logits: Tensor, top_p: Tensor) -> Tensor:
    """Mask (-inf) the tail beyond nucleus mass `top_p [B]`; rows with top_p >= 1 are untouched."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cum > top_p.unsqueeze(1)
    drop_sorted[:, 0] = False
    drop_sorted &= (top_p < 1.0).unsqueeze(1)
    drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def top_k_filter(logits: Tensor, top_k: Tensor, k_max: int) -> Tensor:
    """Mask logits below each row's k-th largest value; `k_max` = host-side max of `top_k`."""
    k_max = min(k_max, logits.shape[-1])
    top = logits.topk(k_max, dim=-1).values
    pivot = top.gather(1, (top_k.clamp(max=k_max) - 1).unsqueeze(1))
    return logits.masked_fill(logits < pivot, float("-inf"))


def exponential_argmax(probs: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """Sample one token per row: argmax(probs / q), q ~ Exp(1) drawn from that row's generator."""
    noise = torch.empty_like(probs)
    for row, gen in enumerate(generators):
        noise[row].exponential_(1.0, generator=gen)
    return (probs / noise).argmax(dim=-1)


class RowSampler:
    """Per-row sampling knobs as device tensors plus one RNG per row, for a decoding batch."""

    def __init__(self, params: Sequence[SamplingParams], eos: int, device: torch.device) -> None:
        if not params:
            raise SamplingParamsError("RowSampler needs at least one row")
        self.eos = eos

        def col(values: list[float], dtype: torch.dtype) -> Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        self.top_k = col([p.top_k for p in params], torch.long)
        self.top_p = col([p.top_p for p in params], torch.float32)
        self.temperature = col([max(p.temperature, 1e-5) for p in params], torch.float32)
        self.penalty = col([p.repetition_penalty for p in params], torch.float32)
        self.min_new = col([p.min_new_tokens for p in params], torch.long)
        # Host-side facts that let whole stages be skipped without reading device memory.
        self._k_max = max(p.top_k for p in params)
        self._any_top_p = any(p.top_p < 1.0 for p in params)
        self._any_penalty = any(p.repetition_penalty != 1.0 for p in params)
        self.generators = []
        for p in params:
            gen = torch.Generator(device=device)
            gen.manual_seed(p.seed if p.seed is not None else secrets.randbits(63))
            self.generators.append(gen)

    def select(self, index: Tensor) -> None:
        """Keep only the rows in `index` (device tensor), in that order."""
        rows = index.tolist()
        for name in ("top_k", "top_p", "temperature", "penalty", "min_new"):
            setattr(self, name, getattr(self, name).index_select(0, index))
        self.generators = [self.generators[r] for r in rows]

    def __call__(self, logits: Tensor, seen: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """Pick the next token of every row.

        Args:
            logits: `[B, V]` raw logits; modified in place (EOS mask and repetition penalty).
            seen: `[B, V]` True for tokens already in each row (prompt included).
            step: number of tokens generated so far (same for all rows).
        Returns:
            `(tokens [B], argmax_is_eos [B])`; the second is the official extra stop signal.
        """
        logits = logits.float()
        eos_blocked = self.min_new > step
        logits[:, self.eos].masked_fill_(eos_blocked, float("-inf"))
        if self._any_penalty:
            apply_repetition_penalty_(logits, seen, self.penalty)
        argmax_is_eos = logits.argmax(dim=-1) == self.eos
        if self._any_top_p:
            logits = top_p_filter(logits, self.top_p)
        logits = logits / self.temperature.unsqueeze(1)
        if self._k_max < logits.shape[-1]:
            logits = top_k_filter(logits, self.top_k, self._k_max)
        probs = logits.softmax(dim=-1)
        return exponential_argmax(probs, self.generators), argmax_is_eos
