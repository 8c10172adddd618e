"""Synthesis pipeline: text + `VoicePrompt` + `SynthesisParams` -> 32 kHz audio, whole or streamed.

Stages, each small: frontend (normalise, split, G2P, BERT) -> GPT decode (`engine.Decoder`) ->
SoVITS decode (one shot, or `ChunkedDecoder` while tokens stream in) -> post-processing
(peak guard, silence between segments). Nothing here is per-request state on a shared object:
each call builds its own generators and decoders.
"""
from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpt_sovits.bundle import ModelBundle
from gpt_sovits.config import GPTConfig
from gpt_sovits.engine import DecodeRequest, Decoder
from gpt_sovits.errors import GSVError
from gpt_sovits.fast import CPU_STEP_THREADS, cpu_threads, grow_chunk, vocoder_threads
from gpt_sovits.overlap import GptPause, WindowJob, read_ahead
from gpt_sovits.sampling import SamplingParams
from gpt_sovits.sovits.streaming import ChunkedDecoder
from gpt_sovits.text.frontend import Segment
from gpt_sovits.voice import VoicePrompt

__all__ = ["AudioChunk", "ModelBundle", "SynthesisParams", "Synthesizer", "VoicePrompt", "read_ahead"]

StopFn = Callable[[], bool]


class SynthesisParamsError(GSVError, ValueError):
    code = "invalid_params"


@dataclass(frozen=True)
class SynthesisParams:
    """How to render one request (defaults: the official api_v2 engine)."""

    text_lang: str = "auto"
    """auto, zh, en, all_zh, ... (ja/ko/yue raise LanguageNotInstalledError for now)."""
    split_method: str = "cut5"
    """Text cut method cut0..cut5 (see gpt_sovits.text.cut)."""
    top_k: int | None = None
    """None: the model's `GPTConfig.decode_top_k`, else the official 15."""
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float | None = None
    """None: the model's `GPTConfig.decode_repetition_penalty`, else the official 1.35."""
    seed: int | None = None
    """None draws a random seed per request."""
    grammar: bool | None = None
    """None: decode under the model's token grammar if its config names one
    (`GPTConfig.decode_grammar`); False: let the GPT pick among all tokens."""
    speed: float = 1.0
    """Speaking rate: latent frames are stretched by 1/speed before the vocoder."""
    noise_scale: float = 0.5
    """Prior sampling temperature of SoVITS (official 0.5)."""
    fragment_interval: float = 0.3
    """Seconds of silence between text segments."""
    max_new_tokens: int = 1500
    """Hard cap on GPT tokens per segment (1500 = 60 s)."""
    max_tokens_per_phone: float = 8.0
    """Runaway guard: at most this many 40 ms tokens per target phone (+25); 0 disables."""
    first_chunk_tokens: int = 4
    """Streaming: tokens of audio in the first chunk (4 tokens = 160 ms). Smaller gets the first
    audio out sooner; larger gives a player more audio to start with, though on a slow CPU the
    later chunks can still arrive late (see the README benchmark: 8 tokens did not cut stalls)."""
    first_lookahead_tokens: int = 0
    """Streaming: tokens decoded after the first chunk's end only as right context, so the first
    chunk waits for first_chunk_tokens + this many GPT tokens; later chunks use
    `sovits.streaming.DEFAULT_LOOKAHEAD` (4). Less trades latency for a less exact first join:
    with a trained SoVITS (our base, real speech tokens) the first 0.5 s differed from the one-shot
    decode by 0.044 relative L2 at 0 vs 0.049 at 2 (the held-back cross-fade tail absorbs it),
    while 2 cost ~70 ms of first-chunk latency on the 2-core CPU (two GPT steps, a wider window)."""
    chunk_tokens: int = 48
    """Streaming: the most tokens in one chunk; chunks double from `first_chunk_tokens` up to it
    (larger chunks re-decode less SoVITS context: 16 context+lookahead tokens per chunk)."""

    def __post_init__(self) -> None:
        checks = [
            (0.25 <= self.speed <= 4.0, "speed must be in [0.25, 4]"),
            (0.0 <= self.noise_scale <= 2.0, "noise_scale must be in [0, 2]"),
            (0.0 <= self.fragment_interval <= 5.0, "fragment_interval must be in [0, 5] s"),
            (1 <= self.max_new_tokens <= 1500, "max_new_tokens must be in [1, 1500]"),
            (1 <= self.first_chunk_tokens <= 200, "first_chunk_tokens must be in [1, 200]"),
            (0 <= self.first_lookahead_tokens <= 16, "first_lookahead_tokens must be in [0, 16]"),
            (1 <= self.chunk_tokens <= 400, "chunk_tokens must be in [1, 400]"),
            (self.max_tokens_per_phone >= 0, "max_tokens_per_phone must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise SynthesisParamsError(message)
        self.sampling(0)  # validates the sampling knobs early

    def grammar_on(self, model: GPTConfig) -> bool:
        """Whether segments decode under `model`'s token grammar (it names one, and this request
        did not turn it off)."""
        return self.grammar is not False and model.decode_grammar is not None

    def sampling(self, seed: int, max_new_tokens: int | None = None,
                 model: GPTConfig | None = None) -> SamplingParams:
        """The GPT knobs of one segment; unset ones come from `model`'s config, then the official defaults."""
        official = SamplingParams()
        top_k, penalty = self.top_k, self.repetition_penalty
        if top_k is None:
            top_k = model.decode_top_k if model is not None and model.decode_top_k is not None else official.top_k
        if penalty is None:
            penalty = (model.decode_repetition_penalty if model is not None
                       and model.decode_repetition_penalty is not None else official.repetition_penalty)
        return SamplingParams(
            top_k=top_k,
            top_p=self.top_p,
            temperature=self.temperature,
            repetition_penalty=penalty,
            seed=seed,
            max_new_tokens=max_new_tokens or self.max_new_tokens,
        )


@dataclass
class AudioChunk:
    """A piece of synthesized audio: float32 mono in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    segment: int
    is_last: bool = False
    meta: dict = field(default_factory=dict)


class Synthesizer:
    """Renders text with a voice. Thread-safe: models are read-only, state lives in each call."""

    def __init__(self, bundle: ModelBundle, backend: Any | None = None, *, read_ahead: bool = True,
                 first_window_all_cores: bool = True) -> None:
        """`backend`: a `serving.backends.Backend` (ONNX Runtime, TensorRT, fast PyTorch) that
        runs the GPT steps and SoVITS decodes; None runs the bundle's models directly.

        `read_ahead`: in `stream`, the GPT runs in a worker thread up to `chunk_tokens` tokens
        (across segment boundaries) ahead of SoVITS, so the two overlap instead of taking
        turns: on a 2-core CPU a stream's wall time approaches max(GPT, SoVITS) instead of their
        sum. Tokens and audio are the same either way.

        `first_window_all_cores`: on CPU, the read-ahead GPT waits while a request's first
        SoVITS window decodes, which then takes every core (`overlap.GptPause`).
        """
        self.bundle = bundle
        self.decoder = backend.decoder() if backend is not None else Decoder(bundle.gpt)
        self.vocoder = backend.vocoder() if backend is not None else bundle.sovits
        self.read_ahead = read_ahead
        self.first_window_all_cores = first_window_all_cores
        self._compute_device = torch.device(getattr(backend, "device", bundle.device))

    # -- stages ----------------------------------------------------------------------------
    def segments(self, text: str, params: SynthesisParams) -> list[Segment]:
        return self.bundle.frontend.process(text, params.text_lang, params.split_method)

    def _request(self, seg: Segment, voice: VoicePrompt, params: SynthesisParams = SynthesisParams()) -> DecodeRequest:
        phones = torch.tensor(seg.phone_ids, dtype=torch.long)
        grammar = self.bundle.token_grammar(seg.phones) if params.grammar_on(self.bundle.gpt_config) else None
        bert = self.bundle.frontend.bert_features(seg).float().cpu()
        if voice.prompt_phones is not None and voice.prompt_tokens is not None:
            phones = torch.cat([voice.prompt_phones, phones])
            bert = torch.cat([voice.prompt_bert, bert], dim=1)
            return DecodeRequest(phones=phones, bert=bert, prompt=voice.prompt_tokens, grammar=grammar)
        return DecodeRequest(phones=phones, bert=bert, prompt=None, grammar=grammar)

    def _token_cap(self, seg: Segment, params: SynthesisParams) -> int:
        if params.max_tokens_per_phone <= 0:
            return params.max_new_tokens
        return min(params.max_new_tokens, int(params.max_tokens_per_phone * len(seg.phone_ids)) + 25)

    def _vocode(self, tokens: Tensor, seg: Segment, ge: Tensor, params: SynthesisParams, gen: torch.Generator) -> np.ndarray:
        if tokens.numel() == 0:
            return np.zeros(0, dtype=np.float32)
        dev = self.bundle.device
        codes = tokens.to(dev)[None, None]
        text = torch.tensor(seg.phone_ids, dtype=torch.long, device=dev)[None]
        with torch.inference_mode():
            audio = self.vocoder.decode(
                codes, text, ge, noise_scale=params.noise_scale, speed=params.speed, generator=gen
            )
        return _peak_guard(audio[0, 0].float().cpu().numpy())

    # -- public API ------------------------------------------------------------------------
    def synthesize(
        self, text: str, voice: VoicePrompt, params: SynthesisParams = SynthesisParams(),
        should_stop: StopFn | None = None,
    ) -> np.ndarray:
        """Whole-file synthesis: all segments decoded by the GPT as one batch, then vocoded."""
        stop = _StopLatch(should_stop)
        plan = self._plan(0, text, voice, params, stop)
        tokens = self.decoder.generate(plan.requests, plan.sampling, should_stop=stop)
        return self._render(plan, tokens, stop)

    def synthesize_many(
        self, jobs: list[tuple[str, VoicePrompt, SynthesisParams, StopFn | None]],
        on_result: Callable[[int, np.ndarray | Exception], None] | None = None,
    ) -> list[np.ndarray | Exception]:
        """Whole-file synthesis of several requests: ONE GPT batch over all their segments.

        Result i is what `synthesize` returns for job i alone (every row keeps its own seed and
        sampling knobs, so the same seed gives the same audio), or the exception job i raised: bad
        text in one job never fails the others, and if the joint decode raises, each job is
        decoded alone so the error lands on its own job. `on_result(i, result)` is called as soon
        as job i is settled, so a caller can answer early jobs before later ones are vocoded.

        Each job's `should_stop` is polled every decode step and before every vocoder call. The
        decoder cannot drop single rows mid-batch, so a stopped job's rows decode on until the
        batch ends and its tokens are thrown away; the batch ends early once every job stopped.
        """
        stops = [_StopLatch(job[3]) for job in jobs]
        results: list[np.ndarray | Exception] = [np.zeros(0, dtype=np.float32)] * len(jobs)
        settle = on_result or (lambda i, r: None)
        plans: list[_Plan] = []
        for i, (text, voice, params, _) in enumerate(jobs):
            try:
                if not stops[i]():
                    plans.append(self._plan(i, text, voice, params, stops[i]))
                    continue
            except Exception as exc:
                results[i] = exc
            settle(i, results[i])

        def poll() -> bool:  # a list, not a generator: every job is asked every step
            return all([plan.stop() for plan in plans])

        for plan, tokens in zip(plans, self._decode_plans(plans, poll)):
            try:
                if isinstance(tokens, Exception):
                    raise tokens
                results[plan.index] = self._render(plan, tokens, poll)
            except Exception as exc:
                results[plan.index] = exc
            settle(plan.index, results[plan.index])
        return results

    def _plan(self, index: int, text: str, voice: VoicePrompt, params: SynthesisParams,
              stop: _StopLatch) -> _Plan:
        """Front end, style and GPT rows of one job (`synthesize` and `synthesize_many` share it)."""
        segs = self.segments(text, params)
        seed = _resolve_seed(params.seed)
        ge = voice.style(self.bundle)
        requests = [self._request(s, voice, params) for s in segs]
        sampling = [params.sampling(seed + i, self._token_cap(s, params), self.bundle.gpt_config) for i, s in enumerate(segs)]
        return _Plan(index, segs, seed, ge, params, requests, sampling, stop)

    def _decode_plans(self, plans: list[_Plan], poll: StopFn) -> list[list[Tensor] | Exception]:
        if not plans:
            return []
        requests = [r for plan in plans for r in plan.requests]
        sampling = [s for plan in plans for s in plan.sampling]
        try:
            # A cancelled job's rows leave the batch; the others go on. `poll` has asked every
            # job just before, so the rows only read the latched answer (no second question).
            row_stops = [plan.stop.said_stop for plan in plans for _ in plan.requests]
            flat = self.decoder.generate(requests, sampling, should_stop=poll, row_stops=row_stops)
        except Exception as exc:
            if len(plans) == 1:
                return [exc]
            return [self._decode_alone(plan) for plan in plans]  # find whose request it was
        out, start = [], 0
        for plan in plans:
            out.append(flat[start:start + len(plan.requests)])
            start += len(plan.requests)
        return out

    def _decode_alone(self, plan: _Plan) -> list[Tensor] | Exception:
        try:
            return self.decoder.generate(plan.requests, plan.sampling, should_stop=plan.stop)
        except Exception as exc:
            return exc

    def _render(self, plan: _Plan, tokens: list[Tensor], poll: StopFn) -> np.ndarray:
        """Vocode one job's segments with silence between them (the tail of every whole-file path)."""
        pieces: list[np.ndarray] = []
        last = len(plan.segs) - 1
        for i, (seg, toks) in enumerate(zip(plan.segs, tokens)):
            poll()  # lets every stopped job in the batch be noticed, not only this one
            if plan.stop():
                break
            gen = _generator(plan.seed + i, self.bundle.device)
            pieces.append(self._vocode(toks, seg, plan.ge, plan.params, gen))
            if i < last:
                pieces.append(self._silence(plan.params))
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    def stream(
        self, text: str, voice: VoicePrompt, params: SynthesisParams = SynthesisParams(),
        should_stop: StopFn | None = None,
    ) -> Iterator[AudioChunk]:
        """Chunked synthesis: tokens stream from the GPT into SoVITS chunk decoding."""
        segs = self.segments(text, params)  # errors surface before the first chunk
        seed = _resolve_seed(params.seed)
        ge = voice.style(self.bundle)
        return self._stream(segs, voice, params, seed, ge, should_stop)

    def _stream(self, segs, voice, params, seed, ge, should_stop) -> Iterator[AudioChunk]:
        sr = self.bundle.sample_rate
        # The GPT worker and this reader both poll it: once it says stop, neither asks again.
        should_stop = _StopLatch(should_stop) if should_stop is not None else None

        gpt_running = threading.Event()  # set while a read-ahead worker decodes beside us

        def produce(stop: StopFn | None) -> Iterator[int | None]:
            """Every segment's tokens, one after another, each segment closed by None."""
            try:
                for i, seg in enumerate(segs):
                    sampling = params.sampling(seed + i, self._token_cap(seg, params), self.bundle.gpt_config)
                    yield from self.decoder.stream(self._request(seg, voice, params), sampling, should_stop=stop)
                    yield None
                    if stop is not None and stop():
                        return
            finally:
                gpt_running.clear()

        pause = None
        if self.read_ahead:
            gpt_running.set()
            pause = GptPause() if self._cpu_cores_to_share() else None
            feed = read_ahead(produce, READ_AHEAD_CHUNKS * params.chunk_tokens, should_stop, pause)
        else:
            feed = produce(should_stop)
        # Only the first segment starts with a small chunk: later ones start where the chunk
        # schedule got to (earlier audio is already playing), which halves SoVITS re-decoding.
        schedule = [params.first_chunk_tokens]
        try:
            for i, seg in enumerate(segs):
                last_segment = i == len(segs) - 1
                tokens = _until_none(feed)
                for samples, final in self._stream_segment(seg, tokens, params, seed + i, ge, should_stop,
                                                           schedule, gpt_running, last_segment, pause):
                    # Chunks go out as soon as they exist; only the segment's flushed tail can be last.
                    yield AudioChunk(samples, sr, i, is_last=final and last_segment)
                if should_stop is not None and should_stop():
                    return
                if not last_segment and params.fragment_interval > 0:
                    yield AudioChunk(self._silence(params), sr, i, meta={"silence": True})
        finally:
            feed.close()  # stops and joins the GPT worker when the caller stops early

    def _stream_segment(self, seg, tokens, params, seed, ge, should_stop, schedule: list[int],
                        gpt_running: threading.Event, last_segment: bool,
                        pause: GptPause | None = None) -> Iterator[tuple[np.ndarray, bool]]:
        """Yields (audio, is_final) pairs; the final pair (possibly empty) ends the segment.

        `schedule[0]` is the size of the next chunk; it is read and left grown for the caller.
        Each SoVITS decode takes the CPU threads the GPT worker leaves free (`vocoder_threads`),
        except the request's first window: with `pause`, the GPT waits and it takes them all.
        """
        text = torch.tensor(seg.phone_ids, dtype=torch.long, device=self.bundle.device)[None]
        first = schedule[0] == params.first_chunk_tokens  # the request's first chunk is in this segment
        chunker = ChunkedDecoder(
            self.vocoder, ge, text, noise_scale=params.noise_scale, speed=params.speed,
            generator=_generator(seed, self.bundle.device),
            first_lookahead=params.first_lookahead_tokens if first else None,
        )
        def free_cores():  # evaluated at each SoVITS call: the GPT may have finished meanwhile
            return cpu_threads(vocoder_threads(gpt_running.is_set()))

        buffer: list[int] = []
        # The first chunk waits for its lookahead too, so its audio is first_chunk_tokens long.
        extra = params.first_lookahead_tokens if first else 0
        for token in tokens:
            buffer.append(token)
            if len(buffer) == 1 and not chunker.tokens:
                # The GPT steps on one core now: encode the phones on the other, before the
                # first window needs them.
                with free_cores():
                    chunker.prepare()
            if len(buffer) < schedule[0] + extra:
                continue
            extra = 0
            window = chunker.push_window(buffer)
            buffer, schedule[0] = [], grow_chunk(schedule[0], params.chunk_tokens)
            if window is None:
                continue
            if first and window.index == 0 and pause is not None and gpt_running.is_set():
                # Time to first audio is this window's decode: hold the GPT for it (one step,
                # ~15 ms on CPU, is lost; the window decodes ~2x faster on every core).
                with pause.hold() as parked, cpu_threads(vocoder_threads(not parked)):
                    audio = chunker.join(window, chunker.decode(window))
            elif not gpt_running.is_set():
                with free_cores():
                    audio = chunker.join(window, chunker.decode(window))
            else:
                job = WindowJob(chunker, window, vocoder_threads(True))
                if not job.wait_unless(lambda: not gpt_running.is_set()) and not (
                        should_stop is not None and should_stop()):
                    # The GPT finished while this window decodes on one core: the segment's
                    # last window starts now on the core the GPT left, instead of afterwards.
                    rest = chunker.flush_window(list(tokens))
                    assert rest is not None  # open, and holds at least the window above
                    last = WindowJob(chunker, rest, vocoder_threads(True))
                    yield _peak_guard(chunker.join(window, job.result())), False
                    if should_stop is not None and should_stop():
                        return
                    yield _peak_guard(chunker.join(rest, last.result())), True
                    return
                audio = chunker.join(window, job.result())
            if audio.size:
                yield _peak_guard(audio), False
        if last_segment:
            # Every token is made; the worker may not have said so yet, but the flush below
            # should not wait for that to take every core.
            gpt_running.clear()
        if should_stop is not None and should_stop():
            return
        if not chunker.tokens and not buffer:
            yield np.zeros(0, dtype=np.float32), True  # the GPT stopped at once: nothing to say
            return
        with free_cores():
            tail = chunker.flush(buffer)  # one decode for the rest and the tail
        yield _peak_guard(tail), True

    def _cpu_cores_to_share(self) -> bool:
        """Whether the GPT worker and SoVITS share CPU cores (what `GptPause` is for)."""
        return (self.first_window_all_cores and self._compute_device.type == "cpu"
                and torch.get_num_threads() > CPU_STEP_THREADS)

    def _silence(self, params: SynthesisParams) -> np.ndarray:
        return np.zeros(int(round(params.fragment_interval * self.bundle.sample_rate)), dtype=np.float32)


READ_AHEAD_CHUNKS = 2
"""The GPT worker may run this many full chunks of tokens ahead of the reader: while SoVITS
decodes one chunk on the other core the GPT makes most of the next, and when the GPT can finish
while the last chunk still decodes, the segment's final window starts beside it."""


def _until_none(feed: Iterator[Any]) -> Iterator[int]:
    """The tokens of one segment from the shared feed (a None closes the segment)."""
    for item in feed:
        if item is None:
            return
        yield item


def _peak_guard(audio: np.ndarray) -> np.ndarray:
    """Official post-processing: a fragment whose peak exceeds 1 is scaled back to 1."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio / peak).astype(np.float32) if peak > 1.0 else audio.astype(np.float32, copy=False)


def _resolve_seed(seed: int | None) -> int:
    return secrets.randbelow(2**31 - 1024) if seed is None or seed < 0 else int(seed)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


class _StopLatch:
    """A job's `should_stop` that stays True once it said so, and is not asked again after."""

    def __init__(self, fn: StopFn | None) -> None:
        self.fn, self.hit = fn, False

    def __call__(self) -> bool:
        if not self.hit and self.fn is not None:
            self.hit = bool(self.fn())
        return self.hit

    def said_stop(self) -> bool:
        """Whether it has said stop already, without asking again."""
        return self.hit


@dataclass
class _Plan:
    """One whole-file job between the front end and the vocoder."""

    index: int
    segs: list[Segment]
    seed: int
    ge: Tensor
    params: SynthesisParams
    requests: list[DecodeRequest]
    sampling: list[SamplingParams]
    stop: _StopLatch
