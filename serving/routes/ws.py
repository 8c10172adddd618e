"""WebSocket /v1/tts/ws: incremental text in, PCM audio out.

Protocol (JSON text frames from the client, binary PCM + JSON events from the server):
1. client -> `{"type": "config", "voice_id": ..., <sampling params>, "api_key"?}`;
   server -> `{"type": "ready", "sample_rate": R, "format": "pcm_s16le", "channels": 1}`.
2. client -> `{"type": "text", "text": "..."}` any number of times (pieces of sentences are fine).
   Each complete sentence is synthesized as soon as its end is seen:
   server -> `{"type": "segment_start", "index": i, "text": ...}`, binary frames of s16le PCM,
   `{"type": "segment_end", "index": i, "samples": n}`.
3. client -> `{"type": "flush"}` synthesizes the buffered remainder, then server -> `{"type": "flushed"}`.
4. client -> `{"type": "close"}` flushes, then server -> `{"type": "done", "segments": n}` and closes (1000).
Errors: server -> `{"type": "error", "error": {"code", "message"}}`, then close 1008 (client
error) or 1011 (server error). A client that disconnects cancels the sentence being made.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, WebSocket
from pydantic import Field, TypeAdapter, ValidationError
from starlette.websockets import WebSocketDisconnect

from serving.app import AppState
from serving.audio_encoding import StreamEncoder, output_rate
from serving.errors import OverloadedError, ServingError, describe
from serving.protocol import WSClose, WSConfig, WSFlush, WSText

log = logging.getLogger(__name__)
router = APIRouter()

_SENTENCE_END = re.compile(r"[.!?;…]+[\"')\]]*\s+|[。！？；\n]+")
_Message = TypeAdapter(Annotated[WSText | WSFlush | WSClose, Field(discriminator="type")])
_CONFIG = TypeAdapter(WSConfig)
_FLUSH, _CLOSE = object(), object()
GAP_SECONDS = 0.3
"""Silence between sentences, like the pipeline's fragment_interval between segments."""


class ProtocolError(ServingError):
    code, status_code = "invalid_message", 422


def split_sentences(buffer: str) -> tuple[list[str], str]:
    """Complete sentences at the front of `buffer` and the unfinished rest.

    A Latin sentence ends at terminal punctuation followed by whitespace (so "3.5" or a
    trailing "." still waiting for more text is not cut); CJK terminators end it at once.
    """
    out, last = [], 0
    for match in _SENTENCE_END.finditer(buffer):
        piece = buffer[last:match.end()].strip()
        if piece:
            out.append(piece)
        last = match.end()
    return out, buffer[last:]


def _parse(raw: str, adapter: TypeAdapter) -> Any:
    try:
        return adapter.validate_python(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise ProtocolError(f"Invalid message: {str(exc).splitlines()[0]}") from None


class _Connection:
    """One WebSocket conversation: its own buffer, queue and stream slot."""

    def __init__(self, ws: WebSocket, state: AppState) -> None:
        self.ws, self.state = ws, state
        self.buffer = ""
        self.send_q, self.recv_q = anyio.create_memory_object_stream[Any](max_buffer_size=1000)
        self.segments = 0
        self.busy = False
        self.owner = ""

    async def receive_text(self) -> str:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("text") is None:
            raise ProtocolError("Binary frames are not accepted; send JSON text messages.")
        return message["text"]

    async def error(self, exc: BaseException) -> None:
        status, code, message = describe(exc)
        self.state.metrics.errors.labels(code=code).inc()
        try:
            await self.ws.send_json({"type": "error", "error": {"code": code, "message": message}})
            await self.ws.close(1011 if status >= 500 else 1008)
        except Exception:  # the client is already gone
            pass

    async def configure(self) -> WSConfig:
        cfg: WSConfig = _parse(await self.receive_text(), _CONFIG)
        principal = self.state.auth.authenticate(self.ws.headers.get("authorization")) \
            if cfg.api_key is None else self.state.auth.authenticate_token(cfg.api_key)
        host = self.ws.client.host if self.ws.client else "unknown"
        self.state.limiter.check(principal.rate_key if principal.authenticated else "ip:" + host)
        if self.state.synthesis is None or self.state.phase != "ready":
            raise OverloadedError("The server is not ready; retry shortly.", code="not_ready", retry_after=5)
        await anyio.to_thread.run_sync(self.state.voices.get, cfg.voice_id, principal.owner)
        self.owner = principal.owner
        return cfg

    async def read(self, cfg: WSConfig) -> None:
        """Client messages -> sentences on the queue; returns after `close` (or raises on disconnect)."""
        idle = self.state.settings.request_timeout_s
        while True:
            raw = None
            with anyio.move_on_after(idle):
                raw = await self.receive_text()
            if raw is None:
                if self.busy or self.send_q.statistics().current_buffer_used:
                    continue
                raise ProtocolError("No message for too long; closing the idle session.", code="idle_timeout")
            msg = _parse(raw, _Message)
            if isinstance(msg, WSText):
                self.buffer += msg.text
                if len(self.buffer) > self.state.settings.max_text_chars:
                    raise ProtocolError("Buffered text exceeds max_text_chars without a sentence end; "
                                        "send punctuation or a flush.", code="text_too_long")
                ready, self.buffer = split_sentences(self.buffer)
                for sentence in ready:
                    await self.send_q.send(sentence)
            else:
                rest, self.buffer = self.buffer.strip(), ""
                if rest:
                    await self.send_q.send(rest)
                await self.send_q.send(_FLUSH if isinstance(msg, WSFlush) else _CLOSE)
                if isinstance(msg, WSClose):
                    return

    async def speak(self, cfg: WSConfig, done: anyio.Event) -> None:
        """Queue -> audio frames and events, one sentence at a time, in order."""
        synthesis = self.state.synthesis
        rate = output_rate("pcm", cfg.sample_rate, self.state.sample_rate)
        async for item in self.recv_q:
            if item is _FLUSH:
                await self.ws.send_json({"type": "flushed"})
                continue
            if item is _CLOSE:
                await self.ws.send_json({"type": "done", "segments": self.segments})
                await self.ws.close(1000)
                done.set()
                return
            self.busy = True
            started = await synthesis.start(self.owner, cfg.voice_id, item, cfg, stream=True, fmt="pcm")
            encoder = StreamEncoder("pcm", self.state.sample_rate, rate)
            await self.ws.send_json({"type": "segment_start", "index": self.segments, "text": item})
            if self.segments:
                await self.ws.send_bytes(encoder.encode(np.zeros(int(GAP_SECONDS * self.state.sample_rate),
                                                                 dtype=np.float32)))
            async for chunk in started.session.chunks_async():
                data = encoder.encode(chunk.samples)
                if data:
                    await self.ws.send_bytes(data)
            tail = encoder.finish()
            if tail:
                await self.ws.send_bytes(tail)
            await self.ws.send_json({"type": "segment_end", "index": self.segments, "samples": encoder.samples_out})
            self.segments += 1
            self.busy = False


@router.websocket("/v1/tts/ws")
async def tts_ws(ws: WebSocket) -> None:
    state: AppState = ws.app.state.gsv
    await ws.accept()
    conn = _Connection(ws, state)
    try:
        cfg = await conn.configure()
        state.streams.acquire()
    except Exception as exc:
        if not isinstance(exc, WebSocketDisconnect):
            await conn.error(exc)
        return
    state.metrics.active_streams.inc()
    await ws.send_json({"type": "ready", "format": "pcm_s16le", "channels": 1,
                        "sample_rate": output_rate("pcm", cfg.sample_rate, state.sample_rate)})
    done = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.speak, cfg, done)
            await conn.read(cfg)
            await done.wait()  # after `close`: let the queued sentences finish
    except Exception as exc:
        inner = _unwrap(exc)
        # on disconnect the task group has already cancelled the sentence being made
        if not isinstance(inner, WebSocketDisconnect):
            await conn.error(inner)
    finally:
        state.streams.release()
        state.metrics.active_streams.dec()


def _unwrap(exc: BaseException) -> BaseException:
    """The first real error inside an ExceptionGroup raised by the task group."""
    while getattr(exc, "exceptions", None):  # (Base)ExceptionGroup, also the 3.10 backport
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc
