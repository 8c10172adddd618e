"""OpenAI-compatible POST /v1/audio/speech (`voice` is one of our voice IDs).

Mapping: `input` -> text, `speed` -> speed, `response_format` -> format. As in OpenAI's API,
`pcm` is raw 16-bit little-endian mono at 24 kHz, and wav/pcm bodies are streamed as they are
made; mp3/opus/flac come as one file. `aac` is not available (no encoder in libsndfile).
"""
from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.audio_encoding import UnsupportedFormatError
from serving.protocol import SamplingParams, SpeechRequest
from serving.routes.deps import ERRORS, Caller, State, Synthesis
from serving.routes.tts import _AUDIO_RESPONSES, respond

router = APIRouter(tags=["openai"], responses=ERRORS)

OPENAI_PCM_RATE = 24000


@router.post("/v1/audio/speech", response_class=Response, responses=_AUDIO_RESPONSES,
             summary="OpenAI-compatible text to speech")
async def speech(body: SpeechRequest, request: Request, caller: Caller, state: State,
                 synthesis: Synthesis) -> Response:
    fmt = body.response_format
    if fmt == "aac":
        raise UnsupportedFormatError("response_format 'aac' is not supported; use mp3, opus, flac, wav or pcm.")
    sampling = SamplingParams(speed=body.speed, sample_rate=OPENAI_PCM_RATE if fmt == "pcm" else None)
    return await respond(request, state, synthesis, caller.owner, body.voice, body.input, sampling,
                         stream=fmt in ("wav", "pcm"), fmt=fmt)
