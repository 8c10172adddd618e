"""WebSocket /v1/tts/ws: config, incremental text, flush, close, audio frames and errors."""
from __future__ import annotations

import numpy as np
import pytest
from starlette.websockets import WebSocketDisconnect

from serving.audio_encoding import decode_pcm16
from serving.routes.ws import split_sentences

KEY = "ws-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def ws_client(tmp_path_factory, tiny_bundle, helpers):
    app = helpers.make_app(tmp_path_factory.mktemp("ws"), tiny_bundle, api_keys=[KEY], max_text_chars=300,
                           warmup=False)
    with helpers.running(app) as client:
        voice = helpers.upload_voice(client, headers=AUTH)["id"]
        yield app, client, voice


def collect(ws) -> tuple[list[dict], list[bytes], int | None]:
    """Read until the server closes: (events, audio frames, close code)."""
    events, frames = [], []
    for _ in range(10_000):
        message = ws.receive()
        if message["type"] == "websocket.close":
            return events, frames, message.get("code")
        if message.get("bytes") is not None:
            frames.append(message["bytes"])
        else:
            import json

            events.append(json.loads(message["text"]))
    raise AssertionError("the server never closed the socket")


def test_sentence_splitting_waits_for_sentence_ends() -> None:
    assert split_sentences("Hello wor") == ([], "Hello wor")
    assert split_sentences("Hello world. How") == (["Hello world."], "How")
    assert split_sentences("Pi is 3.14 today") == ([], "Pi is 3.14 today")
    assert split_sentences("Done.") == ([], "Done.")  # may still continue ("Done.5"?): wait
    assert split_sentences("你好。今天") == (["你好。"], "今天")
    assert split_sentences('He said "stop!" Then') == (['He said "stop!"'], "Then")


def test_incremental_text_flush_and_close(ws_client) -> None:
    app, client, voice = ws_client
    with client.websocket_connect("/v1/tts/ws") as ws:
        ws.send_json({"type": "config", "voice_id": voice, "api_key": KEY, "language": "en", "seed": 1})
        ready = ws.receive_json()
        assert ready == {"type": "ready", "format": "pcm_s16le", "channels": 1, "sample_rate": 32000}
        ws.send_json({"type": "text", "text": "Hello wor"})
        ws.send_json({"type": "text", "text": "ld. How are"})
        ws.send_json({"type": "flush"})
        ws.send_json({"type": "text", "text": " Bye"})
        ws.send_json({"type": "close"})
        events, frames, code = collect(ws)
    assert code == 1000
    kinds = [e["type"] for e in events]
    assert kinds == ["segment_start", "segment_end", "segment_start", "segment_end", "flushed",
                     "segment_start", "segment_end", "done"]
    assert [e["text"] for e in events if e["type"] == "segment_start"] == ["Hello world.", "How are", "Bye"]
    audio = decode_pcm16(b"".join(frames))
    samples = sum(e["samples"] for e in events if e["type"] == "segment_end")
    assert audio.size == samples > 0 and np.all(np.isfinite(audio))
    assert events[-1] == {"type": "done", "segments": 3}
    assert app.state.gsv.streams.in_use == 0


def test_resampled_output_rate(ws_client) -> None:
    _, client, voice = ws_client
    with client.websocket_connect("/v1/tts/ws", headers=AUTH) as ws:
        ws.send_json({"type": "config", "voice_id": voice, "sample_rate": 16000, "language": "en"})
        assert ws.receive_json()["sample_rate"] == 16000
        ws.send_json({"type": "text", "text": "Hi there."})
        ws.send_json({"type": "close"})
        events, frames, code = collect(ws)
    assert code == 1000 and len(b"".join(frames)) // 2 == events[1]["samples"]


@pytest.mark.parametrize("config, code, close", [
    ({"type": "config", "voice_id": "v_nope", "api_key": KEY}, "voice_not_found", 1008),
    ({"type": "config", "voice_id": "v_nope", "api_key": "wrong"}, "unauthorized", 1008),
    ({"type": "config", "voice_id": "v_nope"}, "unauthorized", 1008),
    ({"type": "text", "text": "hi"}, "invalid_message", 1008),
    ({"type": "config", "voice_id": "v_x", "api_key": KEY, "top_k": -1}, "invalid_message", 1008),
])
def test_bad_config_gets_an_error_event_then_close(ws_client, config, code, close) -> None:
    _, client, _ = ws_client
    with client.websocket_connect("/v1/tts/ws") as ws:
        ws.send_json(config)
        events, frames, close_code = collect(ws)
    assert [e["error"]["code"] for e in events] == [code] and close_code == close and not frames


def test_bad_message_after_config_closes_with_error(ws_client) -> None:
    _, client, voice = ws_client
    with client.websocket_connect("/v1/tts/ws", headers=AUTH) as ws:
        ws.send_json({"type": "config", "voice_id": voice})
        ws.receive_json()
        ws.send_bytes(b"\x00\x01")
        events, _, code = collect(ws)
    assert events[-1]["error"]["code"] == "invalid_message" and code == 1008


def test_unterminated_text_over_the_limit_is_refused(ws_client) -> None:
    _, client, voice = ws_client
    with client.websocket_connect("/v1/tts/ws", headers=AUTH) as ws:
        ws.send_json({"type": "config", "voice_id": voice})
        ws.receive_json()
        ws.send_json({"type": "text", "text": "a" * 301})
        events, _, code = collect(ws)
    assert events[-1]["error"]["code"] == "text_too_long" and code == 1008


def test_client_leaving_mid_sentence_cancels_the_job(ws_client) -> None:
    app, client, voice = ws_client
    control = app.state.control
    control.after_first_gate.clear()
    control.first_chunk_sent.clear()
    try:
        with client.websocket_connect("/v1/tts/ws", headers=AUTH) as ws:
            ws.send_json({"type": "config", "voice_id": voice})
            ws.receive_json()
            ws.send_json({"type": "text", "text": "This is a long sentence that will be cut off. "})
            assert control.first_chunk_sent.wait(30)
            session = control.sessions[-1]
            ws.close()
    except WebSocketDisconnect:
        pass
    finally:
        control.after_first_gate.set()
    assert session.wait_done(30) and session.status == "cancelled"
    assert session.stop_checks_after_cancel <= 3
