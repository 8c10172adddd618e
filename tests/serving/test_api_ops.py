"""Operations: health/readiness, metrics, server info, rate limits, body limits, backpressure,
stream limits and start-up failure."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from serving.ratelimit import RateLimiter
from serving.settings import Settings


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, tiny_bundle, helpers):
    app = helpers.make_app(tmp_path_factory.mktemp("ops"), tiny_bundle, workers=1, queue_size=1,
                           max_concurrent_streams=1, max_request_bytes=4096)
    with helpers.running(app) as client:
        voice = helpers.upload_voice(client)["id"]
        yield app, client, voice


def wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def tts(client, voice: str, **extra):
    return client.post("/v1/tts", json={"voice_id": voice, "text": "Hi there.", "language": "en", **extra})


def test_readyz_waits_for_warm_up_while_healthz_is_live(tmp_path, tiny_bundle, helpers) -> None:
    control = helpers.SynthControl()
    control.start_gate.clear()  # the warm-up synthesis blocks here
    app = helpers.make_app(tmp_path, tiny_bundle, control=control)
    try:
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            resp = client.get("/readyz")
            assert resp.status_code == 503 and resp.json()["error"]["code"] == "not_ready"
            assert "Retry-After" in resp.headers
            control.start_gate.set()
            helpers.wait_ready(client.get)
            assert client.get("/readyz").json() == {"status": "ready", "detail": None}
            assert [key[0] for key, _ in control.outputs] == ["Hello."]  # the warm-up ran once
    finally:
        control.start_gate.set()


def test_failed_start_up_is_reported_not_hidden(tmp_path) -> None:
    from serving.app import create_app

    app = create_app(Settings(_env_file=None, data_dir=tmp_path, models_dir=tmp_path / "none"))
    with TestClient(app) as client:
        assert wait_for(lambda: app.state.gsv.phase == "failed")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "start-up failed" in ready.json()["error"]["message"]
        resp = client.post("/v1/tts", json={"voice_id": "v_x", "text": "hi"})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "not_ready"
        assert "GPT" in resp.json()["error"]["message"]


def test_info_reports_random_weights_and_capabilities(app_client) -> None:
    _, client, _ = app_client
    info = client.get("/v1/info").json()
    assert info["random_weights"] is True and info["sample_rate"] == 32000
    assert {"wav", "pcm", "flac"} <= set(info["formats"]) and info["stream_formats"] == ["pcm", "wav"]
    assert info["auth_required"] is False and "en" in info["languages"]


def test_metrics_count_requests_errors_and_latencies(app_client) -> None:
    _, client, voice = app_client
    assert tts(client, voice, format="pcm", stream=True).status_code == 200
    assert tts(client, "v_missing").status_code == 404
    text = client.get("/metrics").text
    assert 'gsv_requests_total{method="POST",route="/v1/tts",status="200"}' in text
    assert 'gsv_errors_total{code="voice_not_found"}' in text
    assert "gsv_queue_depth 0.0" in text
    first = [ln for ln in text.splitlines() if ln.startswith("gsv_first_chunk_seconds_count")]
    rtf = [ln for ln in text.splitlines() if ln.startswith("gsv_rtf_count")]
    assert float(first[0].split()[-1]) >= 1 and float(rtf[0].split()[-1]) >= 1


def test_rate_limit_is_429_with_retry_after(app_client) -> None:
    app, client, _ = app_client
    state = app.state.gsv
    saved, state.limiter = state.limiter, RateLimiter(per_minute=6, burst=2)
    try:
        codes = [client.get("/v1/voices").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        resp = client.get("/v1/voices")
        assert resp.json()["error"]["code"] == "rate_limited" and int(resp.headers["Retry-After"]) >= 1
        assert client.get("/healthz").status_code == 200  # ops endpoints are not rate limited
    finally:
        state.limiter = saved


def test_json_body_over_the_limit_is_413(app_client) -> None:
    _, client, voice = app_client
    resp = tts(client, voice, text="a" * 5000)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"

    def chunked():  # no Content-Length: the limit applies while the body streams in
        yield b'{"voice_id": "' + voice.encode() + b'", "text": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}'

    resp = client.post("/v1/tts", content=chunked(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"


def test_queue_full_is_503_at_once_while_accepted_requests_finish(app_client) -> None:
    app, client, voice = app_client
    control, engine = app.state.control, app.state.gsv.engine
    control.start_gate.clear()  # hold the only worker
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(tts, client, voice)
            assert wait_for(lambda: engine.inflight() == 1)
            queued = pool.submit(tts, client, voice)
            assert wait_for(lambda: engine.queue_depth() == 1)
            rejected = tts(client, voice)  # worker busy + queue (size 1) full
            assert rejected.status_code == 503 and not running.done()
            assert rejected.json()["error"]["code"] == "queue_full"
            assert int(rejected.headers["Retry-After"]) >= 1
            control.start_gate.set()
            assert running.result(60).status_code == 200 and queued.result(60).status_code == 200
    finally:
        control.start_gate.set()


def test_second_concurrent_stream_is_503(app_client) -> None:
    app, client, voice = app_client
    control = app.state.control
    control.after_first_gate.clear()
    control.first_chunk_sent.clear()
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(tts, client, voice, format="pcm", stream=True)
            assert control.first_chunk_sent.wait(30)
            second = tts(client, voice, format="pcm", stream=True)
            assert second.status_code == 503 and second.json()["error"]["code"] == "too_many_streams"
            control.after_first_gate.set()
            assert first.result(60).status_code == 200
    finally:
        control.after_first_gate.set()
    assert wait_for(lambda: app.state.gsv.streams.in_use == 0)
    assert tts(client, voice, format="pcm", stream=True).status_code == 200


def test_shutdown_marks_draining_and_refuses_new_work(tmp_path, tiny_bundle, helpers) -> None:
    app = helpers.make_app(tmp_path, tiny_bundle, warmup=False)
    with helpers.running(app) as client:
        voice = helpers.upload_voice(client)["id"]
        app.state.gsv.begin_drain()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "shutting down" in ready.json()["error"]["message"]
        resp = tts(client, voice)
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "shutting_down"
    assert not app.state.gsv.engine.alive()


def test_openapi_docs_are_served(app_client) -> None:
    _, client, _ = app_client
    spec = client.get("/openapi.json").json()
    assert {"/v1/voices", "/v1/tts", "/v1/audio/speech", "/readyz"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_web_page_and_script_are_served(app_client) -> None:
    _, client, _ = app_client
    page = client.get("/")
    assert page.status_code == 200 and "random-banner" in page.text and "/web/app.js" in page.text
    script = client.get("/web/app.js")
    assert script.status_code == 200 and "MediaRecorder" in script.text

