"""Fast inference path: prepared (folded, cast or INT8) models and a low-sync token loop.

`engine.Decoder` is the reference decoder: batched, one host read per step. This module is what
the serving backends run for streaming, with the same tokens for the same seed:

- `prepare_t2s` / `prepare_sovits` return inference copies of the models: eval mode, no grads,
  weight norm folded (SoVITS), FP16/BF16 on GPU, and on CPU optionally dynamic INT8 for every
  Linear of the GPT blocks, the packed q/k/v projection included (`torch.ao` dynamic quantisation;
  a v2-size 24x512 step measured 2.2x faster than FP32 here, on a shared AVX-512 VNNI CPU).
  The HiFi-GAN generator can run in its own precision (`vocoder_precision`; "auto" = BF16 on
  CPUs with native BF16 instructions, where it measured 1.8x faster at ~1.6% relative L2).
- `decode_tokens` is one sampling loop for every backend. A backend only provides
  `t2s_prefill(request, capacity) -> (logits, state)` and `state.step(token) -> logits`; sampling
  runs on the logits' device and the host reads tokens and the stop flag once every
  `sync_every` steps (1 on CPU, where reads are free; 4 on CUDA). Up to `sync_every - 1` steps
  past a stop are computed and thrown away; the emitted tokens do not change.
- `TorchT2S` is the PyTorch backend of that loop: a dynamic KV cache on CPU (a step reads only
  the filled slots) and, on CUDA, a static cache whose single-token step is captured once as a
  CUDA graph and replayed (one launch per step instead of ~10 per layer).
- `FastDecoder` wraps any such backend behind `engine.Decoder`'s `generate`/`stream` API.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from gpt_sovits.config import GPTConfig
from gpt_sovits.engine import DecodeRequest, _validate
from gpt_sovits.errors import GSVError
from gpt_sovits.grammar import GrammarRows
from gpt_sovits.kv_cache import KVCache, SpareCaches
from gpt_sovits.sampling import RowSampler, SamplingParams
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.t2s import SelfAttention, T2SModel

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}
DEFAULT_GRAPH_MAX_LEN = 2048
"""Slots of the CUDA-graph KV cache: prompt phones + target phones + prompt tokens + new tokens."""
DEFAULT_GRAPH_POOL = 8
"""CUDA-graph step runners per model (one sequence each): concurrent streams up to this many all
replay graphs; more fall back to eager steps. Each holds a static cache (v2 fp16: ~100 MB)."""


class PrecisionError(GSVError, ValueError):
    """A precision that the device cannot run (e.g. INT8 kernels on CUDA, FP16 on CPU)."""

    code = "unsupported_precision"


# ------------------------------------------------------------------------------ preparation
def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Map "auto" to fp16 on CUDA and fp32 elsewhere; reject combinations that cannot run well."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "int8" and device.type != "cpu":
        raise PrecisionError("torch int8 uses CPU dynamic-quantisation kernels: use fp16/bf16 on GPU")
    if precision == "fp16" and device.type == "cpu":
        raise PrecisionError("fp16 has no fast CPU kernels: use fp32, bf16 or int8 on CPU")
    return precision


class _Int8Attention(SelfAttention):
    """`SelfAttention` whose packed q/k/v projection is a Linear (quantised afterwards).

    Only `in_projection` differs; the attention itself is the parent's `forward`.
    """

    def __init__(self, attn: SelfAttention) -> None:
        nn.Module.__init__(self)
        self.n_head = attn.n_head
        self.dropout = attn.dropout
        dim = attn.out_proj.in_features
        self.qkv = nn.Linear(dim, 3 * dim)
        with torch.no_grad():
            self.qkv.weight.copy_(attn.in_proj_weight)
            self.qkv.bias.copy_(attn.in_proj_bias)
        self.out_proj = attn.out_proj

    def in_projection(self, x: Tensor) -> Tensor:
        return self.qkv(x)


def quantize_t2s_int8_(model: T2SModel) -> T2SModel:
    """In place: dynamic INT8 for every Linear inside the transformer blocks.

    Embeddings, `bert_proj` and the output layer stay FP32 (they are a few percent of a step,
    and the decoders read `ar_predict_layer.weight` for the device and dtype).
    """
    import torch.ao.nn.intrinsic as nni  # here: torch.ao warns about its deprecation on import

    dynamic = torch.ao.quantization.default_dynamic_qconfig
    for block in model.h.layers:
        block.self_attn = _Int8Attention(block.self_attn)
        # linear1 + ReLU as one fused kernel: saves a pass over the [slots, ffn_dim] activations
        # (v2 prefill of ~240 slots: 7 of ~160 ms).
        block.linear1 = nni.LinearReLU(block.linear1, block.activation)
        block.activation = nn.Identity()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices; the kernels are current
        torch.ao.quantization.quantize_dynamic(
            model.h, {nn.Linear: dynamic, nni.LinearReLU: dynamic}, dtype=torch.qint8, inplace=True)
    return model


def prepare_t2s(model: T2SModel, precision: str = "auto", device: torch.device | str | None = None) -> T2SModel:
    """An inference copy of the GPT on `device` in `precision` (the original is not touched)."""
    device = torch.device(device) if device is not None else model.ar_predict_layer.weight.device
    prec = resolve_precision(precision, device)
    fast = copy.deepcopy(model).eval().requires_grad_(False).to(device)
    if prec == "int8":
        return quantize_t2s_int8_(fast)
    return fast.to(_DTYPES[prec])


def cpu_has_native_bf16() -> bool:
    """True when this CPU has BF16 dot-product instructions (AVX512-BF16 or AMX-BF16).

    `torch.ops.mkldnn._is_mkldnn_bf16_supported()` is also true on plain AVX-512, where BF16 is
    emulated and slower than FP32, so the CPU flags are read instead (Linux; False elsewhere).
    """
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_vocoder_precision(vocoder_precision: str, precision: str, device: torch.device | str) -> str:
    """Precision of the HiFi-GAN generator alone ("auto", "fp32", "bf16", "fp16").

    "auto" follows the SoVITS precision, except on CPUs with native BF16, where an FP32/INT8
    model runs its generator in BF16: it is ~90% of a chunk's SoVITS time and measured 1.8x
    faster there, at ~1.6% relative L2 from FP32 (chunked streaming itself differs from a one-shot
    decode by 15-30%, see `sovits.streaming`). The text encoder and flow stay in FP32.
    """
    device = torch.device(device)
    prec = resolve_precision(precision, device)
    if vocoder_precision == "auto":
        if device.type == "cpu" and prec in ("fp32", "int8") and cpu_has_native_bf16():
            return "bf16"
        return "fp32" if prec == "int8" else prec
    if vocoder_precision == "int8":
        raise PrecisionError("the vocoder has no INT8 path (convolutions): use auto, fp32, bf16 or fp16")
    return resolve_precision(vocoder_precision, device)


def prepare_sovits(
    model: SynthesizerTrn, precision: str = "auto", device: torch.device | str | None = None,
    vocoder_precision: str = "fp32",
) -> SynthesizerTrn:
    """An inference copy of SoVITS: weight norm folded, eval, cast (INT8 keeps SoVITS in FP32).

    `vocoder_precision` casts the HiFi-GAN generator (`dec`) on its own; see
    `resolve_vocoder_precision` ("auto": BF16 on CPUs with native BF16).
    """
    device = torch.device(device) if device is not None else model.ssl_proj.weight.device
    prec = resolve_precision(precision, device)
    voc = resolve_vocoder_precision(vocoder_precision, prec, device)
    fast = copy.deepcopy(model).eval().requires_grad_(False).to(device)
    fast.fold_weight_norm()
    fast = fast.to(_DTYPES[prec])
    fast.dec.to(_DTYPES[voc])
    return fast


# ------------------------------------------------------------------------------ the loop
class T2SState(Protocol):
    """One sequence's model state inside a backend (its KV cache)."""

    def step(self, token: Tensor) -> Tensor:
        """Feed the token `[1]` sampled last; return the next logits `[1, vocab]`."""
        ...

    def close(self) -> None:
        """Give back what the state holds (a CUDA graph, buffers)."""
        ...


class T2SBackend(Protocol):
    """What `decode_tokens` needs from a backend (PyTorch, ONNX Runtime, TensorRT)."""

    eos: int
    vocab_size: int

    def t2s_prefill(self, request: DecodeRequest, capacity: int) -> tuple[Tensor, T2SState]:
        """Run the prompt; `capacity` = new slots the state must hold. Returns (logits, state)."""
        ...


def grow_chunk(previous: int, cap: int) -> int:
    """Streaming chunk schedule: each chunk doubles the last one, up to `cap` tokens.

    A small first chunk gets audio out early; doubling keeps the next chunk's compute inside
    the audio the listener is already hearing, and fewer, larger chunks cost less in total.
    """
    return max(1, min(cap, 2 * previous))


class _WindowRecorder:
    """Stands in for SoVITS in a `ChunkedDecoder`: records each window's (token count,
    `vocode_from`) and returns silence of the right length, so a stream's windows can be listed
    without decoding."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.lengths: set[tuple[int, int]] = set()

    def decode(self, codes: Tensor, text: Tensor, ge: Tensor, noise_scale: float = 0.5,
               speed: float = 1.0, generator: torch.Generator | None = None, vocode_from: int = 0) -> Tensor:
        self.lengths.add((int(codes.shape[-1]), vocode_from))
        return torch.zeros(1, 1, (codes.shape[-1] - vocode_from) * self.cfg.samples_per_token)


def stream_window_lengths(sovits_cfg: Any, first_chunk: int, chunk_cap: int, max_tokens: int = 120,
                          first_lookahead: int | None = None) -> list[tuple[int, int]]:
    """The SoVITS windows that streams decode with the default `ChunkedDecoder` settings, as
    (token count, `vocode_from`) pairs, for warm-up: a segment pushed in the `grow_chunk`
    schedule from `first_chunk` (the first segment) or from `chunk_cap` (later ones), flushed
    after every total up to `max_tokens`; windows that start at token 0 are only listed when the
    schedule itself produces them (a short segment's single flush can have any length)."""
    key = (sovits_cfg.samples_per_token, sovits_cfg.sampling_rate, first_chunk, chunk_cap, max_tokens,
           first_lookahead)
    return list(_window_lengths(*key))


def warm_up_windows(windows: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """A small subset of (token count, `vocode_from`) windows whose decodes meet every token
    count (text encoder and flow) and every generator length (count - vocode_from) among
    `windows`: kernels are built per input length, not per pair. Greedy set cover."""
    todo = sorted(set(windows))
    counts, lengths = {n for n, _ in todo}, {n - k for n, k in todo}
    chosen: list[tuple[int, int]] = []
    while counts or lengths:
        best = max(todo, key=lambda w: (w[0] in counts) + (w[0] - w[1] in lengths))
        chosen.append(best)
        counts.discard(best[0])
        lengths.discard(best[0] - best[1])
    return chosen


@functools.lru_cache(maxsize=8)
def _window_lengths(samples_per_token: int, sampling_rate: int, first_chunk: int, chunk_cap: int,
                    max_tokens: int, first_lookahead: int | None) -> tuple[tuple[int, int], ...]:
    from types import SimpleNamespace

    from gpt_sovits.sovits.streaming import ChunkedDecoder

    recorder = _WindowRecorder(SimpleNamespace(samples_per_token=samples_per_token, sampling_rate=sampling_rate))
    ge, phones = torch.zeros(1, 1, 1), torch.zeros(1, 1, dtype=torch.long)
    for start, lookahead in ((first_chunk, first_lookahead), (chunk_cap, None)):
        for total in range(1, max_tokens + 1):
            dec = ChunkedDecoder(recorder, ge, phones, noise_scale=0.0, first_lookahead=lookahead)
            size, pushed = start + (lookahead or 0), 0  # the pipeline's first push adds its lookahead
            while pushed + size <= total:
                dec.push([0] * size)
                pushed, size = pushed + size, grow_chunk(size if pushed else start, chunk_cap)
            if total - pushed < total:  # a flush after pushes: its window follows the buckets
                dec.flush([0] * (total - pushed))
    return tuple(sorted(recorder.lengths))


def decode_tokens(
    backend: T2SBackend,
    request: DecodeRequest,
    params: SamplingParams,
    *,
    sync_every: int = 1,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[int]:
    """Yield the tokens of one request (same stop rules and tokens as `engine.Decoder`).

    The host reads the device every `sync_every` steps; `should_stop` is polled as often. A
    request with a grammar reads every step: the grammar needs each token before the next mask.
    """
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    if request.grammar is not None:
        sync_every = 1
    if should_stop is not None and should_stop():
        return
    with torch.inference_mode():
        logits, state = backend.t2s_prefill(request, params.max_new_tokens + sync_every)
    try:
        loop = _RowLoop(backend, request, params, logits, state, sync_every)
        while not loop.done:
            for token in loop.run_block():
                yield token
            if should_stop is not None and should_stop():
                return
    finally:
        state.close()


class _RowLoop:
    """Sampling state of one row; `run_block` runs up to `sync_every` steps, then reads once."""

    def __init__(self, backend: T2SBackend, request: DecodeRequest, params: SamplingParams,
                 logits: Tensor, state: T2SState, sync_every: int) -> None:
        dev = logits.device
        self.state, self.logits, self.eos = state, logits, backend.eos
        self.max_new, self.sync_every = params.max_new_tokens, sync_every
        self.produced, self.done = 0, False
        self._pending: Tensor | None = None  # the block's last token, fed at the next block
        with torch.inference_mode():
            self.sampler = RowSampler([params], backend.eos, dev)
            self.seen = torch.zeros(1, backend.vocab_size, dtype=torch.bool, device=dev)
            if request.prompt is not None and request.prompt.numel():
                self.seen[0, request.prompt.to(dev)] = True
            self.tokens = torch.zeros(sync_every, dtype=torch.long, device=dev)
            self.stops = torch.zeros(sync_every, dtype=torch.bool, device=dev)
        self.grammar = GrammarRows([request.grammar], backend.vocab_size, backend.eos, dev)

    @torch.inference_mode()
    def _steps(self, n: int) -> list[list[int]]:
        # The block's last token is fed to the model at the start of the next block, not before
        # this block's read: the caller gets its tokens one model step sooner (first audio too).
        if self._pending is not None:
            self.logits, self._pending = self.state.step(self._pending), None
        for j in range(n):  # n == 1 whenever there is a grammar (see decode_tokens)
            step = self.produced + j
            self.logits, must_stop = self.grammar.restrict(self.logits)
            tok, argmax_eos = self.sampler(self.logits, self.seen, step)
            self.tokens[j] = tok[0]
            self.stops[j] = (tok[0] == self.eos) | argmax_eos[0] | must_stop[0]  # the grammar may end it
            self.seen.scatter_(1, tok.view(1, 1), True)
            if step + 1 < self.max_new:
                if j + 1 < n:
                    self.logits = self.state.step(tok)
                else:
                    self._pending = tok
        return torch.stack([self.tokens[:n], self.stops[:n].long()]).tolist()  # the one sync

    def run_block(self) -> list[int]:
        n = min(self.sync_every, self.max_new - self.produced)
        tokens, stops = self._steps(n)
        self.grammar.advance(tokens[:1])
        self.produced += n
        out = []
        for token, stop in zip(tokens, stops):
            if stop:
                self.done = True
                return out
            out.append(token)
        self.done = self.produced >= self.max_new
        return out


@dataclass(frozen=True)
class _Configured:
    """Just the `.cfg` that `engine._validate` reads, for backends that hold no torch model."""

    cfg: GPTConfig


class FastDecoder:
    """`engine.Decoder`'s `generate`/`stream` API on top of any `T2SBackend`.

    `generate` decodes requests one after another (each with its own seed, so results equal the
    batched engine's); use `engine.Decoder` directly where batching pays (GPU, many requests).
    """

    def __init__(self, backend: T2SBackend, *, sync_every: int = 1, config: GPTConfig | None = None) -> None:
        self.backend = backend
        self.sync_every = sync_every
        self._config = config  # request validation (shapes, phone/token ranges, max_positions)

    def _check(self, requests: Sequence[DecodeRequest], params: Sequence[SamplingParams]) -> None:
        if self._config is not None:
            _validate(_Configured(self._config), requests, params)  # type: ignore[arg-type]

    def stream(
        self, request: DecodeRequest, params: SamplingParams = SamplingParams(),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[int]:
        self._check([request], [params])
        return decode_tokens(self.backend, request, params, sync_every=self.sync_every,
                             should_stop=should_stop)

    def generate(
        self, requests: Sequence[DecodeRequest],
        params: SamplingParams | Sequence[SamplingParams] = SamplingParams(),
        should_stop: Callable[[], bool] | None = None,
        row_stops: Sequence[Callable[[], bool] | None] | None = None,
    ) -> list[Tensor]:
        rows = [params] * len(requests) if isinstance(params, SamplingParams) else list(params)
        self._check(requests, rows)
        if row_stops is not None and len(row_stops) != len(requests):
            raise ValueError(f"{len(row_stops)} row_stops for {len(requests)} requests")
        out = []
        for i, (req, par) in enumerate(zip(requests, rows)):
            stop = _either(should_stop, row_stops[i] if row_stops is not None else None)
            toks = list(decode_tokens(self.backend, req, par, sync_every=self.sync_every, should_stop=stop))
            out.append(torch.tensor(toks, dtype=torch.long))
        return out


def _either(a: Callable[[], bool] | None, b: Callable[[], bool] | None) -> Callable[[], bool] | None:
    if a is None or b is None:
        return a or b
    return lambda: a() or b()


# ------------------------------------------------------------------------ PyTorch backend
def embed_request(model: T2SModel, request: DecodeRequest, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, int]:
    """`[1, S, D]` embedded `[phones | prompt tokens]` of one request, and its text length."""
    phones = request.phones.to(device).unsqueeze(0)
    n = phones.shape[1]
    bert = request.bert.to(device=device, dtype=dtype).unsqueeze(0)
    parts = [model.embed_text(phones, bert, torch.arange(n, device=device).unsqueeze(0))]
    if request.prompt is not None and request.prompt.numel():
        prompt = request.prompt.to(device).unsqueeze(0)
        parts.append(model.embed_audio(prompt, torch.arange(prompt.shape[1], device=device).unsqueeze(0)))
    return torch.cat(parts, dim=1), n


CPU_STEP_THREADS = 1
"""Intra-op threads of a CPU single-token step. A batch-1 step is ~500 tiny ops; waking a second
OpenMP worker for each costs more than it saves: v2 INT8 on the 2-core dev machine measured
15-17 ms per step with 1 thread vs 26-27 ms with 2 (prefill, one big batch of slots, keeps the
caller's threads: 160-190 ms with 2 vs 200-240 ms with 1). It also leaves the other core to
SoVITS while the GPT reads ahead. OpenMP thread counts are per calling thread, so this does not
touch other threads' settings; the caller's own count is restored after every step."""


def set_threads(n: int) -> None:
    """`torch.set_num_threads(n)` for the calling thread, made to stick.

    torch initialises each thread's count lazily, at its first parallel op or count query, from
    the count *any* thread set last; a thread that sets its count before that can have it
    overwritten later by another thread's setting. Querying first runs that initialisation now.
    """
    torch.get_num_threads()
    torch.set_num_threads(n)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the body with at most `n` intra-op threads in the calling thread (n < 1: unchanged).

    OpenMP thread counts are per calling thread, so this never touches other threads' settings;
    the caller's count is restored on exit.
    """
    restore = torch.get_num_threads()
    if n < 1 or n >= restore:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(restore)


def vocoder_threads(gpt_running: bool) -> int:
    """Intra-op threads for a CPU SoVITS decode: the cores the GPT step does not hold.

    While the read-ahead GPT worker decodes, it keeps `CPU_STEP_THREADS` busy; a vocoder using
    every core as well oversubscribes the CPU (2-core machine, v2 INT8: the step went from 15 to
    25 ms with the vocoder's 2 threads beside it, which costs more than the vocoder gains). Once
    the GPT is done the vocoder takes every core again.
    """
    total = torch.get_num_threads()
    return max(1, total - CPU_STEP_THREADS) if gpt_running else total


class _EagerState:
    def __init__(self, model: T2SModel, cache: KVCache,
                 release: Callable[[KVCache], None] | None = None) -> None:
        self.model, self.cache, self._release = model, cache, release
        self.threads = CPU_STEP_THREADS if cache.pad.device.type == "cpu" else 0

    @torch.inference_mode()
    def step(self, token: Tensor) -> Tensor:
        with cpu_threads(self.threads):
            x = self.model.embed_audio(token.view(1, 1), self.cache.audio_positions(1))
            return self.model.logits(self.model(x, cache=self.cache)[:, -1])

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(self.cache)


class GraphStep:
    """The single-token step over a static batch-1 cache, captured once as a CUDA graph.

    With `capture=False` (CPU, tests) the same static-buffer step runs eagerly, so everything
    but the capture itself is exercised without a GPU. One sequence uses it at a time.
    """

    def __init__(self, model: T2SModel, max_len: int, *, capture: bool) -> None:
        weight = model.ar_predict_layer.weight
        self.model = model
        self.cache = KVCache.for_config(model.cfg, 1, max_len, device=weight.device,
                                        dtype=weight.dtype, static=True)
        self.token = torch.zeros(1, 1, dtype=torch.long, device=weight.device)
        self.capture = capture
        self.graph: Any = None
        self.logits: Tensor | None = None
        self._lock = threading.Lock()

    def acquire(self, slots: int) -> bool:
        """Reserve the step for one sequence needing `slots` cache slots (False: use eager)."""
        return slots <= self.cache.max_len and self._lock.acquire(blocking=False)

    def release(self) -> None:
        self._lock.release()

    def _body(self) -> Tensor:
        x = self.model.embed_audio(self.token, self.cache.audio_positions(1))
        return self.model.logits(self.model(x, cache=self.cache)[:, -1])

    @torch.inference_mode()
    def ensure_captured(self) -> None:
        """Capture the graph (CUDA only): warm up on a side stream, record, then reset the cache."""
        if not self.capture or self.graph is not None:
            return
        cache, dev = self.cache, self.cache.pad.device
        cache.reset()
        cache.set_layout(torch.zeros(1, dtype=torch.long, device=dev), torch.zeros(1, dtype=torch.long, device=dev))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self._body()
        self.graph = graph
        cache.reset()

    @torch.inference_mode()
    def step(self, token: Tensor) -> Tensor:
        self.token.copy_(token.view(1, 1))
        if self.graph is None:
            return self._body()
        self.graph.replay()  # advances the cache cursor on the device; host length stays put
        assert self.logits is not None
        return self.logits


class _GraphState:
    def __init__(self, runner: GraphStep) -> None:
        self.runner = runner
        self._open = True

    def step(self, token: Tensor) -> Tensor:
        return self.runner.step(token)

    def close(self) -> None:
        if self._open:
            self._open = False
            self.runner.release()


class TorchT2S:
    """PyTorch `T2SBackend`: eager dynamic cache, or a CUDA-graph step on a static cache."""

    def __init__(self, model: T2SModel, *, cuda_graph: bool = True,
                 graph_max_len: int = DEFAULT_GRAPH_MAX_LEN, force_graph_step: bool = False,
                 graph_pool: int | None = None, spare_caches: int = 2) -> None:
        """`graph_pool`: static-cache step runners (default `DEFAULT_GRAPH_POOL` on CUDA, 1 when
        `force_graph_step` exercises the path on CPU). `spare_caches`: eager KV caches kept
        resident for reuse (`kv_cache.SpareCaches`; 0 frees each one with its sequence)."""
        self.model = model.eval()
        self.eos = model.cfg.eos
        self.vocab_size = model.cfg.vocab_size
        weight = model.ar_predict_layer.weight
        self.device, self.dtype = weight.device, weight.dtype
        on_cuda = self.device.type == "cuda"
        self.graphs: list[GraphStep] = []
        if (cuda_graph and on_cuda) or force_graph_step:
            max_len = min(graph_max_len, model.cfg.max_positions)
            n = graph_pool if graph_pool is not None else (DEFAULT_GRAPH_POOL if on_cuda else 1)
            self.graphs = [GraphStep(model, max_len, capture=on_cuda and cuda_graph) for _ in range(max(1, n))]
        self.graph: GraphStep | None = self.graphs[0] if self.graphs else None
        self.spare = SpareCaches(model.cfg, self.device, self.dtype, keep=spare_caches)

    def _acquire(self, slots: int) -> GraphStep | None:
        """A free step runner whose cache holds `slots`, or None (the caller steps eagerly)."""
        return next((runner for runner in self.graphs if runner.acquire(slots)), None)

    @torch.inference_mode()
    def t2s_prefill(self, request: DecodeRequest, capacity: int) -> tuple[Tensor, T2SState]:
        x, n = embed_request(self.model, request, self.device, self.dtype)
        slots = x.shape[1] + capacity
        runner = self._acquire(slots)
        try:
            if runner is not None:
                runner.ensure_captured()
                cache = runner.cache
                cache.reset()
            else:
                cache = self.spare.take(slots)
            cache.set_layout(torch.zeros(1, dtype=torch.long, device=self.device),
                             torch.full((1,), n, dtype=torch.long, device=self.device))
            logits = self.model.logits(self.model(x, cache=cache)[:, -1])
        except BaseException:
            if runner is not None:
                runner.release()
            raise
        state: T2SState = (_GraphState(runner) if runner is not None
                           else _EagerState(self.model, cache, self.spare.give))
        return logits, state

    def warmup(self) -> None:
        """Capture every step graph and run a tiny decode, so lazy initialisation happens now."""
        with torch.inference_mode():
            for runner in self.graphs:
                runner.ensure_captured()
        cfg = self.model.cfg
        req = DecodeRequest(torch.zeros(8, dtype=torch.long), torch.zeros(cfg.bert_dim, 8),
                            torch.zeros(8, dtype=torch.long))
        params = SamplingParams(top_k=1, seed=0, max_new_tokens=4, min_new_tokens=4)
        for _ in decode_tokens(self, req, params):
            pass
