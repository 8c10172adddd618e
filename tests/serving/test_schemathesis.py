"""Property-based API fuzzing: requests generated from /openapi.json never get a 5xx answer.

The app runs on tiny random models behind a loopback uvicorn; a few examples per operation keep
the run short (it is still marked slow: it starts a server and makes ~100 requests).
"""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_bundle, helpers):
    app = helpers.make_app(tmp_path_factory.mktemp("fuzz"), tiny_bundle, warmup=False, max_text_chars=100,
                           queue_size=64, max_concurrent_streams=64)
    with helpers.live_server(app) as (_, url):
        import httpx

        with httpx.Client(base_url=url, timeout=60) as http:
            voice = helpers.upload_voice(http)["id"]
        yield schemathesis.openapi.from_url(url + "/openapi.json"), voice


def _use_real_voice(case, voice: str) -> None:
    """Point synthesis requests at an existing voice so they get past the 404 and really run."""
    if isinstance(case.body, dict):
        for key in ("voice_id", "voice"):
            if key in case.body:
                case.body[key] = voice
    if case.method == "GET" and case.path_parameters and "voice_id" in case.path_parameters:
        case.path_parameters["voice_id"] = voice


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api, mode) -> None:
    # schemathesis' own pytest plugin does not run under this pytest version, so each operation's
    # case strategy is driven by a plain hypothesis test.
    schema, voice = api
    statuses: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label  # bound per iteration; `check` runs within it

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            if mode is GenerationMode.POSITIVE:
                _use_real_voice(case, voice)
            response = case.call(timeout=120)
            statuses.setdefault(label, set()).add(response.status_code)  # noqa: B023
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]

        try:
            check()
        except Unsatisfiable:  # no parameters to break (e.g. GET /healthz in negative mode)
            assert mode is GenerationMode.NEGATIVE
    if mode is GenerationMode.POSITIVE:  # valid requests did reach synthesis
        assert 200 in statuses["POST /v1/tts"] and 200 in statuses["POST /v1/audio/speech"]
