"""POST /v1/tts: whole file or chunked stream, plus the response helpers the OpenAI route reuses.

Streaming waits for the first chunk before sending the status line, so errors found while
preparing (unknown voice, bad language, overload) are still clean JSON 4xx/5xx answers; after the
first byte an error can only cut the stream short (the connection is closed without the final
chunk, which HTTP clients report as an incomplete body).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from serving.app import AppState
from serving.audio_encoding import MEDIA_TYPES, StreamEncoder, encode_file, resample
from serving.engine import RequestSession
from serving.protocol import SamplingParams, TTSRequest
from serving.routes.deps import ERRORS, Caller, State, Synthesis
from serving.synthesis import Started

log = logging.getLogger(__name__)
router = APIRouter(tags=["synthesis"], responses=ERRORS)

_AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Audio (the format asked for)",
          "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in set(MEDIA_TYPES.values())}},
    504: {"description": "Synthesis did not finish within the request timeout"},
}


async def wait_watching_disconnect(request: Request, session: RequestSession) -> Any:
    """Await a whole-file result, cancelling the job if the client goes away meanwhile."""

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                session.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        return await session.result()
    finally:
        watcher.cancel()
        try:
            await watcher
        except (asyncio.CancelledError, Exception):
            pass


async def file_response(request: Request, state: AppState, started: Started, fmt: str) -> Response:
    audio = await wait_watching_disconnect(request, started.session)
    rate = started.out_rate

    def encode() -> bytes:
        return encode_file(resample(audio, state.sample_rate, rate), rate, fmt)

    data = await anyio.to_thread.run_sync(encode)
    return Response(data, media_type=MEDIA_TYPES[fmt],
                    headers={"X-Sample-Rate": str(rate), "X-Request-Id": started.session.id})


async def stream_response(state: AppState, started: Started, fmt: str, release: Callable[[], None]) -> Response:
    """A chunked response fed by the session; `release` frees the stream slot exactly once."""
    session = started.session
    encoder = StreamEncoder(fmt, state.sample_rate, started.out_rate)
    chunks = session.chunks_async()
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chunks.aclose()
        release()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            head = encoder.header() + (encoder.encode(first.samples) if first is not None else b"")
            yield head
            async for chunk in chunks:
                data = encoder.encode(chunk.samples)
                if data:
                    yield data
            tail = encoder.finish()
            if tail:
                yield tail
        except Exception:
            log.exception("stream %s failed after the first byte; cutting it short", session.id)
            raise
        finally:
            await chunks.aclose()  # cancels the worker when the client went away
            release()

    headers = {"X-Sample-Rate": str(started.out_rate), "X-Request-Id": session.id, "Cache-Control": "no-store"}
    media = MEDIA_TYPES[fmt] + (f";rate={started.out_rate};channels=1" if fmt == "pcm" else "")
    return StreamingResponse(body(), media_type=media, headers=headers)


async def respond(request: Request, state: AppState, synthesis: Any, owner: str, voice_id: str, text: str,
                  sampling: SamplingParams, *, stream: bool, fmt: str) -> Response:
    """Shared by /v1/tts and /v1/audio/speech: submit, then answer as a file or a stream."""
    if not stream:
        started = await synthesis.start(owner, voice_id, text, sampling, stream=False, fmt=fmt)
        return await file_response(request, state, started, fmt)
    state.streams.acquire()  # 503 before any work is queued
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            state.streams.release()
            state.metrics.active_streams.dec()

    state.metrics.active_streams.inc()
    try:
        started = await synthesis.start(owner, voice_id, text, sampling, stream=True, fmt=fmt)
    except BaseException:
        release()
        raise
    return await stream_response(state, started, fmt, release)


@router.post("/v1/tts", response_class=Response, responses=_AUDIO_RESPONSES, summary="Synthesize speech")
async def tts(body: TTSRequest, request: Request, caller: Caller, state: State, synthesis: Synthesis) -> Response:
    return await respond(request, state, synthesis, caller.owner, body.voice_id, body.text, body,
                         stream=body.stream, fmt=body.format)
