"""Streaming over a real loopback socket: first chunk before the rest exists, disconnects stop
decoding, and SIGTERM drains in-flight streams while refusing new connections."""
from __future__ import annotations

import signal
import threading
import time

import httpx
import numpy as np
import pytest

from serving.audio_encoding import decode_pcm16
from gpt_sovits.sovits.streaming import relative_l2 as rel_l2

# Streamed audio is decoded chunk by chunk (left context + cross-fade), so with the prior noise
# off (noise_scale=0) it matches the whole file within this relative L2 (see sovits/streaming.py).
STREAM_TOLERANCE = 0.3

LONG_TEXT = "This sentence is long enough to need many decode steps and several audio chunks."


def _serve(tmp_path, tiny_bundle, helpers):
    app = helpers.make_app(tmp_path, tiny_bundle, warmup=False)
    with helpers.live_server(app) as (server, url):
        with httpx.Client(base_url=url, timeout=60) as http:
            voice = helpers.upload_voice(http, "en_slt")["id"]
            yield app, server, http, voice


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_bundle, helpers):
    yield from _serve(tmp_path_factory.mktemp("stream"), tiny_bundle, helpers)


@pytest.fixture
def served_once(tmp_path, tiny_bundle, helpers):
    """A server of its own (the drain test shuts it down)."""
    yield from _serve(tmp_path, tiny_bundle, helpers)


def wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def body(voice: str, **extra) -> dict:
    return {"voice_id": voice, "text": LONG_TEXT, "language": "en", "seed": 3, "format": "pcm", "noise_scale": 0.0,
            **extra}


def test_first_chunk_arrives_before_the_rest_is_made(served) -> None:
    app, _, http, voice = served
    control = app.state.control
    control.after_first_gate.clear()  # the worker stops right after yielding chunk 1
    try:
        with http.stream("POST", "/v1/tts", json=body(voice, stream=True)) as resp:
            assert resp.status_code == 200
            chunks = resp.iter_raw()
            first = next(chunks)
            session = control.sessions[-1]
            assert len(first) > 0 and session.status == "running" and session.chunks == 1
            control.after_first_gate.set()
            streamed = first + b"".join(chunks)
    finally:
        control.after_first_gate.set()
    whole = http.post("/v1/tts", json=body(voice)).content
    a, b = decode_pcm16(streamed), decode_pcm16(whole)
    assert a.shape == b.shape and rel_l2(a, b) < STREAM_TOLERANCE


def _first_chunk(app, http, request: dict) -> bytes:
    control = app.state.control
    control.after_first_gate.clear()  # the worker stops right after yielding chunk 1
    try:
        with http.stream("POST", "/v1/tts", json=request) as resp:
            assert resp.status_code == 200
            chunks = resp.iter_raw()
            first = next(chunks)
            control.after_first_gate.set()
            b"".join(chunks)
    finally:
        control.after_first_gate.set()
    return first


def test_first_chunk_size_is_a_request_knob(served) -> None:
    app, _, http, voice = served
    default = _first_chunk(app, http, body(voice, stream=True))
    larger = _first_chunk(app, http, body(voice, stream=True, first_chunk_tokens=12))
    assert len(larger) > 2 * len(default) > 0  # 12 tokens of audio instead of 4
    resp = http.post("/v1/tts", json=body(voice, stream=True, first_chunk_tokens=0))
    assert resp.status_code == 422 and resp.json()["error"]["code"]


def test_client_disconnect_mid_stream_stops_decoding(served) -> None:
    app, _, http, voice = served
    control, engine = app.state.control, app.state.gsv.engine
    control.after_first_gate.clear()
    try:
        with http.stream("POST", "/v1/tts", json=body(voice, stream=True)) as resp:
            next(resp.iter_raw())
            session = control.sessions[-1]
        # the connection is closed here; let the worker go on: it must notice within a few steps
    finally:
        control.after_first_gate.set()
    assert wait_for(lambda: session.status != "running")
    assert session.status == "cancelled" and engine.stats.cancelled >= 1
    assert session.stop_checks_after_cancel <= 3
    # a full rendering of this text takes many more chunks than the cancelled one made
    full = http.post("/v1/tts", json=body(voice, stream=True))
    assert full.status_code == 200 and control.sessions[-1].chunks > session.chunks + 1


def test_sigterm_drains_the_inflight_stream_and_refuses_new_connections(served_once) -> None:
    app, server, http, voice = served_once
    control = app.state.control
    control.after_first_gate.clear()
    received: list[bytes] = []
    errors: list[BaseException] = []
    url = str(http.base_url)

    def listen() -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as own:
                with own.stream("POST", "/v1/tts", json=body(voice, stream=True)) as resp:
                    for part in resp.iter_raw():
                        received.append(part)
        except BaseException as exc:  # reported below
            errors.append(exc)

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        assert control.first_chunk_sent.wait(30) and wait_for(lambda: len(received) >= 1)
        server.handle_exit(signal.SIGTERM, None)
        assert app.state.gsv.phase == "draining"

        def refused() -> bool:
            try:
                httpx.get(url + "/healthz", timeout=1)
                return False
            except httpx.TransportError:
                return True

        assert wait_for(refused)
    finally:
        control.after_first_gate.set()
    listener.join(60)
    assert not errors and not listener.is_alive()
    streamed = decode_pcm16(b"".join(received))
    session = control.sessions[-1]
    assert session.status == "done" and streamed.size == session.audio_samples
