"""Decode engine for the T2S GPT: token ids in, semantic token ids out.

It knows nothing of text, audio or HTTP. It owns prefill, the KV cache, sampling and the stop
rules, and decodes several segments at once:

- every row is `[phones | prompt tokens]`, left-padded so that all rows end on the same slot;
- each step feeds the tokens sampled last step, one slot per row, through the cached model;
- a row stops when it samples EOS, when the argmax of its penalised logits is EOS (official
  rules; EOS is never emitted), when its grammar says it must, or when it reaches
  `max_new_tokens`. A request with a `TokenGrammar` samples only among the tokens its grammar
  allows at each step (`gpt_sovits.grammar`). Finished rows are dropped
  from the batch and the cache, so they stop costing compute;
- each row samples with its own seeded RNG, so a request gives the same tokens batched or alone.

Only generated tokens are returned (the official caller's slice `y[:, -idx:]` loses the first
token when decoding stops without EOS; that quirk is not reproduced).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gpt_sovits.grammar import GrammarRows, TokenGrammar
from gpt_sovits.kv_cache import KVCache
from gpt_sovits.sampling import RowSampler, SamplingParams
from gpt_sovits.t2s import T2SModel

__all__ = ["DecodeRequest", "DecodeRequestError", "Decoder", "SamplingParams"]


class DecodeRequestError(ValueError):
    """A decode request is malformed (shapes, token ranges, lengths)."""


@dataclass(frozen=True)
class DecodeRequest:
    """One segment to decode."""

    phones: Tensor
    """`[N]` int64 phone ids: prompt-text phones followed by target phones."""
    bert: Tensor
    """`[bert_dim, N]` BERT features aligned with `phones` (zeros for non-zh phones)."""
    prompt: Tensor | None = None
    """`[P]` int64 semantic tokens of the reference audio, or None for reference-free decoding."""
    grammar: TokenGrammar | None = None
    """Which generated tokens may follow which (None: any); the prompt is not walked."""


class Decoder:
    """Runs batched or streamed decoding on one `T2SModel` (puts the model in eval mode).

    One Decoder may serve requests one after another or from several threads; each call keeps
    its state (cache, RNGs, outputs) in its own session object.
    """

    def __init__(self, model: T2SModel, *, static_cache: bool = False) -> None:
        self.model = model.eval()
        self.static_cache = static_cache

    def generate(
        self,
        requests: Sequence[DecodeRequest],
        params: SamplingParams | Sequence[SamplingParams] = SamplingParams(),
        should_stop: Callable[[], bool] | None = None,
        row_stops: Sequence[Callable[[], bool] | None] | None = None,
    ) -> list[Tensor]:
        """Decode all requests as one batch; returns each one's generated tokens (CPU int64).

        `params` is one setting for every row or one per request. `should_stop` is polled before
        every step; when it returns True decoding ends and the tokens so far are returned.
        `row_stops[i]`, if given, is polled before every step while request i decodes: once it
        returns True that row leaves the batch with its tokens so far, so a cancelled job stops
        costing compute while the others go on.
        """
        if row_stops is not None and len(row_stops) != len(requests):
            raise ValueError(f"{len(row_stops)} row_stops for {len(requests)} requests")
        session = _Session(self.model, requests, _per_row(params, len(requests)), self.static_cache)
        while not session.done:
            if should_stop is not None and should_stop():
                break
            if row_stops is not None:
                session.drop([i for i in session.rows if (stop := row_stops[i]) is not None and stop()])
                if session.done:
                    break
            session.step()
        return [torch.tensor(out, dtype=torch.long) for out in session.outputs]

    def stream(
        self,
        request: DecodeRequest,
        params: SamplingParams = SamplingParams(),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[int]:
        """Yield tokens of one request as they are sampled; `should_stop` is polled every step.

        The request is validated now; prefill runs on the first `next()`.
        """
        _validate(self.model, [request], [params])
        return self._stream(request, params, should_stop)

    def _stream(
        self,
        request: DecodeRequest,
        params: SamplingParams,
        should_stop: Callable[[], bool] | None,
    ) -> Iterator[int]:
        if should_stop is not None and should_stop():
            return
        session = _Session(self.model, [request], [params], self.static_cache)
        while not session.done:
            if should_stop is not None and should_stop():
                return
            for _, token in session.step():
                yield token


def _per_row(params: SamplingParams | Sequence[SamplingParams], n: int) -> list[SamplingParams]:
    if isinstance(params, SamplingParams):
        return [params] * n
    params = list(params)
    if len(params) != n:
        raise DecodeRequestError(f"got {len(params)} SamplingParams for {n} requests")
    return params


def _validate(
    model: T2SModel, requests: Sequence[DecodeRequest], params: Sequence[SamplingParams]
) -> None:
    """Check shapes and token ranges up front (one host read per request, never per step)."""
    cfg = model.cfg
    if not requests:
        raise DecodeRequestError("no requests to decode")
    for i, (req, par) in enumerate(zip(requests, params)):
        where = f"request {i}"
        if req.phones.dim() != 1 or req.phones.numel() == 0 or req.phones.dtype != torch.long:
            raise DecodeRequestError(f"{where}: phones must be a non-empty 1-D int64 tensor")
        n = req.phones.numel()
        if req.bert.shape != (cfg.bert_dim, n) or not req.bert.is_floating_point():
            raise DecodeRequestError(
                f"{where}: bert must be a float tensor of shape ({cfg.bert_dim}, {n}), "
                f"got {tuple(req.bert.shape)} {req.bert.dtype}"
            )
        if int(req.phones.min()) < 0 or int(req.phones.max()) >= cfg.phoneme_vocab_size:
            raise DecodeRequestError(
                f"{where}: phone ids must be in [0, {cfg.phoneme_vocab_size})"
            )
        p = 0
        if req.prompt is not None:
            if req.prompt.dim() != 1 or req.prompt.dtype != torch.long:
                raise DecodeRequestError(f"{where}: prompt must be a 1-D int64 tensor or None")
            p = req.prompt.numel()
            if p and (int(req.prompt.min()) < 0 or int(req.prompt.max()) >= cfg.eos):
                raise DecodeRequestError(f"{where}: prompt tokens must be in [0, {cfg.eos})")
        if n > cfg.max_positions or p + par.max_new_tokens > cfg.max_positions:
            raise DecodeRequestError(
                f"{where}: {n} phones / {p} prompt + {par.max_new_tokens} new tokens exceed "
                f"max_positions={cfg.max_positions}; split the text or lower max_new_tokens"
            )


class _Session:
    """State of one batched decode: cache, sampler, per-row outputs. Private to the engine."""

    def __init__(
        self,
        model: T2SModel,
        requests: Sequence[DecodeRequest],
        params: Sequence[SamplingParams],
        static_cache: bool,
    ) -> None:
        _validate(model, requests, params)
        self.model = model
        self.eos = model.cfg.eos
        self.max_new = [p.max_new_tokens for p in params]
        self.outputs: list[list[int]] = [[] for _ in requests]
        self.rows = list(range(len(requests)))  # request index of each active batch row
        self.steps = 0
        self.pending: Tensor | None = None
        self.done = False
        weight = model.ar_predict_layer.weight
        self.device = weight.device
        with torch.inference_mode():
            self._prefill(requests, params, weight.dtype, static_cache)

    def _prefill(
        self,
        requests: Sequence[DecodeRequest],
        params: Sequence[SamplingParams],
        dtype: torch.dtype,
        static_cache: bool,
    ) -> None:
        model, dev = self.model, self.device
        seqs, text_lens = [], []
        for req in requests:
            phones = req.phones.to(dev)
            n = phones.numel()
            pos = torch.arange(n, device=dev).unsqueeze(0)
            bert = req.bert.to(device=dev, dtype=dtype).unsqueeze(0)
            parts = [model.embed_text(phones.unsqueeze(0), bert, pos)]
            if req.prompt is not None and req.prompt.numel():
                prompt = req.prompt.to(dev).unsqueeze(0)
                ppos = torch.arange(prompt.shape[1], device=dev).unsqueeze(0)
                parts.append(model.embed_audio(prompt, ppos))
            seqs.append(torch.cat(parts, dim=1)[0])
            text_lens.append(n)
        b, s = len(seqs), max(x.shape[0] for x in seqs)
        x = torch.zeros(b, s, seqs[0].shape[-1], device=dev, dtype=dtype)
        pads = [s - seq.shape[0] for seq in seqs]
        for row, seq in enumerate(seqs):
            x[row, pads[row] :] = seq
        pad = torch.tensor(pads, dtype=torch.long, device=dev)
        prefix_end = pad + torch.tensor(text_lens, dtype=torch.long, device=dev)

        self.cache = KVCache.for_config(
            model.cfg, b, s + max(self.max_new), device=dev, dtype=dtype, static=static_cache
        )
        self.cache.set_layout(pad, prefix_end)
        self.logits = model.logits(model(x, cache=self.cache)[:, -1])
        self.seen = torch.zeros(b, model.cfg.vocab_size, dtype=torch.bool, device=dev)
        for row, req in enumerate(requests):
            if req.prompt is not None and req.prompt.numel():
                self.seen[row, req.prompt.to(dev)] = True
        self.sampler = RowSampler(params, self.eos, dev)
        self.grammar = GrammarRows([r.grammar for r in requests], model.cfg.vocab_size, self.eos, dev)

    @torch.inference_mode()
    def step(self) -> list[tuple[int, int]]:
        """Advance every active row by one token; returns the `(request index, token)` emitted."""
        if self.done:
            return []
        if self.pending is not None:
            positions = self.cache.audio_positions(1)
            x = self.model.embed_audio(self.pending.unsqueeze(1), positions)
            self.logits = self.model.logits(self.model(x, cache=self.cache)[:, -1])
        self.logits, must_stop = self.grammar.restrict(self.logits)
        tokens, argmax_eos = self.sampler(self.logits, self.seen, self.steps)
        stop = (tokens == self.eos) | argmax_eos
        tok_host, stop_host = torch.stack([tokens, stop.long()]).tolist()  # the one sync per step
        self.steps += 1
        self.grammar.advance(tok_host)
        emitted, keep = [], []
        for j, req_idx in enumerate(self.rows):
            if stop_host[j] or must_stop[j]:
                continue
            self.outputs[req_idx].append(tok_host[j])
            emitted.append((req_idx, tok_host[j]))
            if len(self.outputs[req_idx]) < self.max_new[req_idx]:
                keep.append(j)
        if not keep:
            self.done, self.pending = True, None
            return emitted
        self.seen.scatter_(1, tokens.unsqueeze(1), True)
        if len(keep) < len(self.rows):
            tokens = tokens.index_select(0, self._keep_rows(keep))
        self.pending = tokens
        return emitted

    def drop(self, requests: Sequence[int]) -> None:
        """Take these requests' rows out of the batch before the next step (cancelled jobs)."""
        gone = set(requests)
        keep = [j for j, req_idx in enumerate(self.rows) if req_idx not in gone]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.done, self.pending = True, None
            return
        with torch.inference_mode():
            index = self._keep_rows(keep)
            if self.pending is not None:
                self.pending = self.pending.index_select(0, index)
            else:  # before the first step: the prefill's logits are still per row
                self.logits = self.logits.index_select(0, index)

    def _keep_rows(self, keep: list[int]) -> Tensor:
        """Compact cache, seen-mask, sampler and row map to the `keep` rows; returns their index."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.keep_rows(index)
        self.seen = self.seen.index_select(0, index)
        self.sampler.select(index)
        self.grammar.select(keep)
        self.rows = [self.rows[j] for j in keep]
        return index
