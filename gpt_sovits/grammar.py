"""Token grammars: which semantic tokens may come next, for models whose tokens mean something.

Why: on phone-aligned tokens (`gpt_sovits.phone_align`) every token names a (phone, HMM state),
so the phones a segment has to say are known before decoding starts. A small GPT trained on a
few hours of speech still drops, swaps and invents phones when it runs free (`gsv eval-gpt`:
phone error rate ~0.34 on held-out transcripts). `PhoneGrammar` lets each step choose only
among tokens that keep the output a monotonic walk through the segment's phones, so the GPT is
left with what it does well, the durations and pauses, and the content is right by construction.

The decode engines (`engine.Decoder`, `fast.FastDecoder`) apply any `TokenGrammar` through
`GrammarRows` and know nothing of phones: a grammar is an immutable description whose states
the engine keeps per row, so one `DecodeRequest` can be decoded again (a retried batch) with
the same result.
"""
from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import torch
from torch import Tensor


class TokenGrammar(Protocol):
    """Which tokens may follow; states are small immutable values the engine keeps per row."""

    def start(self) -> Hashable:
        """State before the first generated token."""

    def allowed(self, state: Hashable) -> frozenset[int]:
        """Token ids (EOS included when stopping is allowed) the next step may choose from.
        Just `{eos}` means the row must stop now."""

    def fallback(self, state: Hashable) -> frozenset[int]:
        """The tokens to choose among instead when the model's own favourite is not allowed
        (a non-empty subset of `allowed`): the model is off the grammar's track, and this is
        the way back to it."""

    def advance(self, state: Hashable, token: int) -> Hashable:
        """State after `token` was emitted."""


class GrammarRows:
    """Per-row grammar states of one decoding batch; rows without a grammar are unconstrained."""

    def __init__(self, grammars: Sequence[TokenGrammar | None], vocab_size: int, eos: int,
                 device: torch.device) -> None:
        self.grammars = list(grammars)
        self.states = [g.start() if g is not None else None for g in self.grammars]
        self.vocab_size, self.eos, self.device = vocab_size, eos, device
        self.active = any(g is not None for g in self.grammars)

    def restrict(self, logits: Tensor) -> tuple[Tensor, list[bool]]:
        """`logits [B, V]` with every token the grammars forbid at -inf (a row whose favourite
        token is not allowed keeps only its grammar's fallback), and the rows that must stop.
        All on the device: no host read of the logits.

        A row that must stop keeps every token (its sample is ignored), so a sampler that also
        forbids EOS for the first steps never sees a row with nothing left."""
        if not self.active:
            return logits, [False] * len(self.grammars)
        rows, backs, stops = [], [], []
        everything = _everything(self.vocab_size)
        for grammar, state in zip(self.grammars, self.states):
            allowed = grammar.allowed(state) if grammar is not None else None
            stop = allowed is not None and allowed == {self.eos}
            stops.append(stop)
            if allowed is None or stop:
                rows.append(everything)
                backs.append(everything)
            else:
                rows.append(_row_mask(allowed, self.vocab_size))
                backs.append(_row_mask(grammar.fallback(state), self.vocab_size))
        allowed_t, fallback_t = torch.stack(rows).to(self.device), torch.stack(backs).to(self.device)
        favourite_ok = allowed_t.gather(1, logits.argmax(dim=-1, keepdim=True))
        keep = torch.where(favourite_ok, allowed_t, fallback_t)
        return logits.masked_fill(~keep, float("-inf")), stops

    def advance(self, tokens: Sequence[int]) -> None:
        """Feed each row the token it emitted this step (host ints, one per current row)."""
        if not self.active:
            return
        self.states = [g.advance(s, t) if g is not None else None
                       for g, s, t in zip(self.grammars, self.states, tokens)]

    def select(self, keep: Sequence[int]) -> None:
        """Keep only these rows, in this order (rows that finished leave the batch)."""
        self.grammars = [self.grammars[j] for j in keep]
        self.states = [self.states[j] for j in keep]
        self.active = any(g is not None for g in self.grammars)


@lru_cache(maxsize=8)
def _everything(vocab_size: int) -> Tensor:
    return torch.ones(vocab_size, dtype=torch.bool)


@lru_cache(maxsize=4096)
def _row_mask(allowed: frozenset[int], vocab_size: int) -> Tensor:
    row = torch.zeros(vocab_size, dtype=torch.bool)
    row[list(allowed)] = True
    return row


PhoneState = tuple[int, int, int, bool]
"""(index of the current phone, -1 before the first; its last HMM state; tokens spent in the
current phone or pause; whether the walk is in a pause)."""

_PAUSE_SYMBOLS = frozenset({"SP", "SP2", "SP3", "AP", "UNK"})


@dataclass(frozen=True)
class PhoneGrammar:
    """A monotonic walk through `phones`: token = phone * n_states + state (phone_align's table).

    From the current phone the next token may stay in it (same or later HMM state), move to the
    next phone, or pause (silence); after a pause the walk goes on with the next phone. EOS is
    allowed once the last phone is reached. `max_skip` > 0 also lets the GPT skip phones (a
    phone shorter than one 40 ms token can fall between token centres, as in the aligned
    training data), but on held-out transcripts its own skips were mostly wrong: phone error
    rate 0.103 with one skip allowed, 0.055 with none (`gsv eval-gpt --grammar`).

    Pauses: up to `max_pause_tokens` at the start, the end and where the text has punctuation;
    elsewhere up to `max_gap_tokens` (the aligned training data has short silences between many
    words, but long ones only at punctuation). At most `max_phone_tokens` in one phone; a pause
    after the last phone that reaches its limit ends the segment.

    Fallback: when the GPT's favourite token is not allowed it has lost its place (it wants a
    phone the text does not have here); staying put then drags the phone out and, tried on the
    snapshot base, more than doubled the length. The fallback moves on to the next phone (or
    ends the segment after the last one) instead.
    """

    phones: tuple[int, ...]
    """Phone indices the segment must say, in order, without silences."""
    n_states: int
    eos: int
    silence: int = 0
    pause_after: frozenset[int] = frozenset()
    """Indices of phones followed by punctuation (long pauses allowed there)."""
    max_skip: int = 0
    max_phone_tokens: int = 10
    max_pause_tokens: int = 20
    max_gap_tokens: int = 4
    _silence_tokens: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_silence_tokens", frozenset(
            self.silence * self.n_states + s for s in range(self.n_states)))

    @classmethod
    def for_symbols(cls, symbols: Sequence[str], phone_table: Sequence[str], n_states: int, eos: int,
                    **limits: int) -> "PhoneGrammar | None":
        """The grammar of a segment's phone symbols (v2 ARPAbet with stress digits, punctuation),
        or None when a symbol is no phone of `phone_table` (another language): decode freely."""
        index = {p: i for i, p in enumerate(phone_table)}
        silence = index.get("SIL", 0)
        phones: list[int] = []
        pauses: set[int] = set()
        for symbol in symbols:
            base = re.sub(r"[0-9]$", "", symbol)
            if base in index and base != "SIL":
                phones.append(index[base])
            elif symbol in _PAUSE_SYMBOLS or not any(c.isalpha() for c in symbol):
                pauses.add(len(phones) - 1)  # punctuation and pause marks: a long pause may go here
            else:
                return None
        return cls(tuple(phones), n_states, eos, silence, frozenset(pauses), **limits)

    def start(self) -> PhoneState:
        return (-1, 0, 0, False)

    def _phone_tokens(self, j: int, first_state: int = 0) -> range:
        base = self.phones[j] * self.n_states
        return range(base + first_state, base + self.n_states)

    def _pause_limit(self, i: int) -> int:
        long_pause = i < 0 or i >= len(self.phones) - 1 or i in self.pause_after
        return self.max_pause_tokens if long_pause else self.max_gap_tokens

    def _ahead(self, i: int) -> range:
        """Indices of the phones the walk may move to from phone i (the next, plus skips)."""
        return range(i + 1, min(len(self.phones), i + 2 + self.max_skip))

    def _onwards(self, i: int) -> set[int]:
        return {t for j in self._ahead(i) for t in self._phone_tokens(j)}

    def allowed(self, state: PhoneState) -> frozenset[int]:
        i, s, run, paused = state
        out = self._onwards(i)
        if not paused and i >= 0 and run < self.max_phone_tokens:
            out.update(self._phone_tokens(i, s))
        if run < self._pause_limit(i) or not paused:
            out |= self._silence_tokens
        if i >= len(self.phones) - 1:
            out.add(self.eos)
        return frozenset(out)

    def fallback(self, state: PhoneState) -> frozenset[int]:
        i = state[0]
        allowed = self.allowed(state)
        if i >= len(self.phones) - 1:  # nothing left to say: stop (silence while EOS is still blocked)
            back = allowed & (self._silence_tokens | {self.eos})
        else:  # the next phone: a skip only when the GPT itself picks one
            back = allowed & set(self._phone_tokens(i + 1))
        return frozenset(back) or allowed

    def advance(self, state: PhoneState, token: int) -> PhoneState:
        i, s, run, paused = state
        if token == self.eos:
            return state
        phone, st = divmod(token, self.n_states)
        if phone == self.silence:
            return (i, s, run + 1 if paused else 1, True)
        if not paused and i >= 0 and phone == self.phones[i] and st >= s and run < self.max_phone_tokens:
            return (i, st, run + 1, False)  # staying (past the limit, the same phone later on is meant)
        for j in self._ahead(i):
            if self.phones[j] == phone:
                return (j, st, 1, False)
        return state  # a token outside the grammar (the row was not masked): nothing to follow
