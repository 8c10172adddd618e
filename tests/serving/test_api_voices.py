"""/v1/voices on a real registry: create/list/get/delete/similar, key scoping, upload errors,
and the JSON error shape of routing errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_bundle, ge2e, helpers):
    app = helpers.make_app(tmp_path_factory.mktemp("voices"), tiny_bundle, ge2e, api_keys=[KEY_A, KEY_B],
                           max_upload_bytes=2_000_000, warmup=False)
    with helpers.running(app) as c:
        yield c


@pytest.fixture(scope="module")
def voice(client, helpers) -> dict:
    return helpers.upload_voice(client, "en_slt", headers=A)


def wav_bytes(seconds: float, sr: int = 16000, seed: int = 0) -> bytes:
    noise = np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32) * 0.1
    buf = io.BytesIO()
    sf.write(buf, noise, sr, format="WAV")
    return buf.getvalue()


def post_file(client, data: bytes, headers=A, **form):
    return client.post("/v1/voices", files={"file": ("x.wav", data, "audio/wav")}, data=form, headers=headers)


def error_code(resp) -> str:
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return body["error"]["code"]


def test_create_returns_201_with_the_voice(voice, helpers) -> None:
    assert voice["id"].startswith("v_") and voice["name"] == "en_slt" and voice["language"] == "en"
    ref_text = (helpers.voice_dir / "en_slt" / "ref.txt").read_text().strip()
    assert voice["transcript"] == ref_text and voice["prompt_text"] == ref_text
    assert voice["warnings"] == [] and voice["stats"]["prompt_mode"] == "text"
    assert "owner" not in voice and "embedding" not in voice


def test_same_speaker_again_is_created_with_a_near_duplicate_warning(client, voice, ge2e, helpers) -> None:
    if ge2e is None:
        pytest.skip("speaker encoder weights not installed")
    again = helpers.upload_voice(client, "en_slt", headers=A)
    try:
        dupes = [w for w in again["warnings"] if w["code"] == "near_duplicate"]
        assert [w["voice_id"] for w in dupes] == [voice["id"]]
        assert dupes[0]["similarity"] >= 0.85
    finally:
        assert client.delete(f"/v1/voices/{again['id']}", headers=A).status_code == 204


def test_get_and_list_are_scoped_to_the_key(client, voice) -> None:
    got = client.get(f"/v1/voices/{voice['id']}", headers=A)
    assert got.status_code == 200 and got.json()["id"] == voice["id"]
    assert voice["id"] in [v["id"] for v in client.get("/v1/voices", headers=A).json()["voices"]]
    assert voice["id"] not in [v["id"] for v in client.get("/v1/voices", headers=B).json()["voices"]]
    for method in ("get", "delete"):
        resp = getattr(client, method)(f"/v1/voices/{voice['id']}", headers=B)
        assert resp.status_code == 404 and error_code(resp) == "voice_not_found"
    resp = client.get(f"/v1/voices/{voice['id']}/similar", headers=B)
    assert resp.status_code == 404
    resp = client.post("/v1/tts", json={"voice_id": voice["id"], "text": "Hi."}, headers=B)
    assert resp.status_code == 404 and error_code(resp) == "voice_not_found"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_missing_or_bad_key_is_401(client, headers) -> None:
    resp = client.get("/v1/voices", headers=headers)
    assert resp.status_code == 401 and error_code(resp) == "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"


def test_delete_is_204_then_the_voice_is_gone(client, helpers) -> None:
    created = helpers.upload_voice(client, "en_allison", headers=B)
    resp = client.delete(f"/v1/voices/{created['id']}", headers=B)
    assert resp.status_code == 204 and resp.content == b""
    assert client.get(f"/v1/voices/{created['id']}", headers=B).status_code == 404
    assert client.delete(f"/v1/voices/{created['id']}", headers=B).status_code == 404


def test_similar_ranks_the_owners_other_voices(client, voice, ge2e, helpers) -> None:
    if ge2e is None:
        pytest.skip("speaker encoder weights not installed")
    other = helpers.upload_voice(client, "en_allison", headers=A)
    try:
        resp = client.get(f"/v1/voices/{voice['id']}/similar", headers=A, params={"k": 3})
        assert resp.status_code == 200
        hits = resp.json()["similar"]
        assert other["id"] in [h["id"] for h in hits] and voice["id"] not in [h["id"] for h in hits]
        hit = next(h for h in hits if h["id"] == other["id"])
        assert hit["name"] == "en_allison" and -1.0 <= hit["similarity"] < 0.85
    finally:
        client.delete(f"/v1/voices/{other['id']}", headers=A)


def test_undecodable_upload_is_422_with_a_code(client) -> None:
    resp = post_file(client, b"this is not audio at all" * 10)
    assert resp.status_code == 422 and error_code(resp) in ("corrupt_audio", "unsupported_format")


def test_too_short_upload_is_422(client) -> None:
    resp = post_file(client, wav_bytes(1.0))
    assert resp.status_code == 422 and error_code(resp) in ("audio_too_short", "no_speech")


def test_upload_over_the_byte_limit_is_413(client) -> None:
    resp = post_file(client, b"\0" * 2_100_000)
    assert resp.status_code == 413 and error_code(resp) == "upload_too_large"


def test_missing_file_field_is_422_validation(client) -> None:
    resp = client.post("/v1/voices", data={"name": "x"}, headers=A)
    assert resp.status_code == 422 and error_code(resp) == "validation_error"
    assert any("file" in d["loc"] for d in resp.json()["error"]["details"])


def test_bad_form_fields_are_422(client) -> None:
    resp = post_file(client, wav_bytes(4.0), language="klingon")
    assert resp.status_code == 422 and error_code(resp) == "validation_error"
    resp = post_file(client, wav_bytes(4.0), name="x" * 300)
    assert resp.status_code == 422


def test_malformed_path_id_is_422(client) -> None:
    resp = client.get("/v1/voices/bad..id", headers=A)
    assert resp.status_code == 422 and error_code(resp) == "validation_error"


def test_unknown_routes_and_methods_get_json_errors(client) -> None:
    resp = client.get("/v1/nope", headers=A)
    assert resp.status_code == 404 and error_code(resp) == "not_found"
    resp = client.put("/v1/voices", headers=A)
    assert resp.status_code == 405 and error_code(resp) == "method_not_allowed"
