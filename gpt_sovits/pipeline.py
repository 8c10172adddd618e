"""Synthesis pipeline: text + `VoicePrompt` + `SynthesisParams` -> 32 kHz audio, whole or streamed.

Stages, each small: frontend (normalise, split, G2P, BERT) -> GPT decode (`engine.Decoder`) ->
SoVITS decode (one shot, or `ChunkedDecoder` while tokens stream in) -> post-processing
(peak guard, silence between segments). Nothing here is per-request state on a shared object:
each call builds its own generators and decoders.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpt_sovits.bundle import ModelBundle
from gpt_sovits.engine import DecodeRequest, Decoder
from gpt_sovits.errors import GSVError
from gpt_sovits.fast import grow_chunk
from gpt_sovits.sampling import SamplingParams
from gpt_sovits.sovits.streaming import ChunkedDecoder
from gpt_sovits.text.frontend import Segment
from gpt_sovits.voice import VoicePrompt

__all__ = ["AudioChunk", "ModelBundle", "SynthesisParams", "Synthesizer", "VoicePrompt"]

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
    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    seed: int | None = None
    """None draws a random seed per request."""
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
    first_chunk_tokens: int = 8
    """Streaming: tokens in the first audio chunk (8 tokens = 320 ms of audio)."""
    chunk_tokens: int = 24
    """Streaming: tokens in every later chunk."""

    def __post_init__(self) -> None:
        checks = [
            (0.25 <= self.speed <= 4.0, "speed must be in [0.25, 4]"),
            (0.0 <= self.noise_scale <= 2.0, "noise_scale must be in [0, 2]"),
            (0.0 <= self.fragment_interval <= 5.0, "fragment_interval must be in [0, 5] s"),
            (1 <= self.max_new_tokens <= 1500, "max_new_tokens must be in [1, 1500]"),
            (1 <= self.first_chunk_tokens <= 200, "first_chunk_tokens must be in [1, 200]"),
            (1 <= self.chunk_tokens <= 400, "chunk_tokens must be in [1, 400]"),
            (self.max_tokens_per_phone >= 0, "max_tokens_per_phone must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise SynthesisParamsError(message)
        self.sampling(0)  # validates the sampling knobs early

    def sampling(self, seed: int, max_new_tokens: int | None = None) -> SamplingParams:
        return SamplingParams(
            top_k=self.top_k,
            top_p=self.top_p,
            temperature=self.temperature,
            repetition_penalty=self.repetition_penalty,
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

    def __init__(self, bundle: ModelBundle, backend: Any | None = None) -> None:
        """`backend`: a `serving.backends.Backend` (ONNX Runtime, TensorRT, fast PyTorch) that
        runs the GPT steps and SoVITS decodes; None runs the bundle's models directly."""
        self.bundle = bundle
        self.decoder = backend.decoder() if backend is not None else Decoder(bundle.gpt)
        self.vocoder = backend.vocoder() if backend is not None else bundle.sovits

    # -- stages ----------------------------------------------------------------------------
    def segments(self, text: str, params: SynthesisParams) -> list[Segment]:
        return self.bundle.frontend.process(text, params.text_lang, params.split_method)

    def _request(self, seg: Segment, voice: VoicePrompt) -> DecodeRequest:
        phones = torch.tensor(seg.phone_ids, dtype=torch.long)
        bert = self.bundle.frontend.bert_features(seg).float().cpu()
        if voice.prompt_phones is not None and voice.prompt_tokens is not None:
            phones = torch.cat([voice.prompt_phones, phones])
            bert = torch.cat([voice.prompt_bert, bert], dim=1)
            return DecodeRequest(phones=phones, bert=bert, prompt=voice.prompt_tokens)
        return DecodeRequest(phones=phones, bert=bert, prompt=None)

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
        segs = self.segments(text, params)
        seed = _resolve_seed(params.seed)
        ge = voice.style(self.bundle)
        requests = [self._request(s, voice) for s in segs]
        sampling = [params.sampling(seed + i, self._token_cap(s, params)) for i, s in enumerate(segs)]
        tokens = self.decoder.generate(requests, sampling, should_stop=should_stop)
        pieces: list[np.ndarray] = []
        for i, (seg, toks) in enumerate(zip(segs, tokens)):
            if should_stop is not None and should_stop():
                break
            gen = _generator(seed + i, self.bundle.device)
            pieces.append(self._vocode(toks, seg, ge, params, gen))
            if i < len(segs) - 1:
                pieces.append(self._silence(params))
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
        for i, seg in enumerate(segs):
            last_segment = i == len(segs) - 1
            for samples, final in self._stream_segment(seg, voice, params, seed + i, ge, should_stop):
                # Chunks go out as soon as they exist; only the segment's flushed tail can be last.
                yield AudioChunk(samples, sr, i, is_last=final and last_segment)
            if should_stop is not None and should_stop():
                return
            if not last_segment and params.fragment_interval > 0:
                yield AudioChunk(self._silence(params), sr, i, meta={"silence": True})

    def _stream_segment(self, seg, voice, params, seed, ge, should_stop) -> Iterator[tuple[np.ndarray, bool]]:
        """Yields (audio, is_final) pairs; the final pair (possibly empty) ends the segment."""
        sampling = params.sampling(seed, self._token_cap(seg, params))
        tokens = self.decoder.stream(self._request(seg, voice), sampling, should_stop=should_stop)
        text = torch.tensor(seg.phone_ids, dtype=torch.long, device=self.bundle.device)[None]
        chunker = ChunkedDecoder(
            self.vocoder, ge, text, noise_scale=params.noise_scale, speed=params.speed,
            generator=_generator(seed, self.bundle.device),
        )
        buffer: list[int] = []
        target = params.first_chunk_tokens
        for token in tokens:
            buffer.append(token)
            if len(buffer) >= target:
                audio = chunker.push(torch.tensor(buffer, dtype=torch.long))
                buffer, target = [], grow_chunk(target, params.chunk_tokens)
                if audio.size:
                    yield _peak_guard(audio), False
        if should_stop is not None and should_stop():
            return
        if not chunker.tokens and not buffer:
            yield np.zeros(0, dtype=np.float32), True  # the GPT stopped at once: nothing to say
            return
        if buffer:
            audio = chunker.push(torch.tensor(buffer, dtype=torch.long))
            if audio.size:
                yield _peak_guard(audio), False
        yield _peak_guard(chunker.flush()), True

    def _silence(self, params: SynthesisParams) -> np.ndarray:
        return np.zeros(int(round(params.fragment_interval * self.bundle.sample_rate)), dtype=np.float32)


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
