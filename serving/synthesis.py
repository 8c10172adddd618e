"""Synthesis service: the per-request glue between routes and the engine.

It checks the request against the settings, resolves the voice for the caller (owner-scoped),
builds `SynthesisParams`, and submits a job. Blocking work (registry reads, prompt loading) runs
in a thread so the event loop never waits on disk.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from serving.audio_encoding import check_format, output_rate
from serving.engine import InferenceEngine, RequestSession, SynthesisJob
from serving.errors import ServingError, TextTooLongError
from serving.protocol import SamplingParams
from serving.settings import Settings

ParamsFactory = Callable[..., Any]


class EmptyTextError(ServingError):
    code, status_code = "empty_text", 422


def default_params_factory(**kwargs: Any) -> Any:
    from gpt_sovits.pipeline import SynthesisParams

    return SynthesisParams(**kwargs)


@dataclass
class Started:
    """A submitted request: the engine session plus the output sample rate it will be encoded at."""

    session: RequestSession
    out_rate: int


class SynthesisService:
    """One per app; holds no per-request state (each call returns its own `RequestSession`)."""

    def __init__(self, engine: InferenceEngine, voices: Any, settings: Settings,
                 params_factory: ParamsFactory = default_params_factory) -> None:
        self.engine = engine
        self.voices = voices
        self.settings = settings
        self.params_factory = params_factory

    def check_text(self, text: str) -> None:
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise TextTooLongError(f"The text has {len(text)} characters; the limit is {limit}. "
                                   "Split it into several requests or use the WebSocket endpoint.")
        if not text.strip():
            raise EmptyTextError("The text is empty or only whitespace; send something to say.")

    def params(self, sampling: SamplingParams) -> Any:
        extra = {} if sampling.first_chunk_tokens is None else {"first_chunk_tokens": sampling.first_chunk_tokens}
        return self.params_factory(
            text_lang=sampling.language, split_method=sampling.split_method, top_k=sampling.top_k,
            top_p=sampling.top_p, temperature=sampling.temperature,
            repetition_penalty=sampling.repetition_penalty, seed=sampling.seed, speed=sampling.speed,
            noise_scale=sampling.noise_scale, grammar=sampling.grammar, **extra,
        )

    def _resolve(self, owner: str, voice_id: str) -> tuple[Any, str | None, str | None]:
        prompt = self.voices.load_prompt(voice_id, owner)
        gpt, sovits = self.voices.weights_paths(voice_id, owner)
        return prompt, gpt, sovits

    async def start(self, owner: str, voice_id: str, text: str, sampling: SamplingParams, *,
                    stream: bool, fmt: str) -> Started:
        """Validate, resolve the voice and submit; errors here still become clean JSON responses."""
        self.check_text(text)
        check_format(fmt, stream=stream)
        params = self.params(sampling)
        prompt, gpt, sovits = await anyio.to_thread.run_sync(self._resolve, owner, voice_id)
        session = self.engine.submit(SynthesisJob(text=text, voice=prompt, params=params, stream=stream,
                                                  gpt_weights=gpt, sovits_weights=sovits))
        return Started(session, output_rate(fmt, sampling.sample_rate, self.engine.sample_rate))
