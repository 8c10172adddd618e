"""Serving test fixtures, and a deterministic stand-in for the synthesis pipeline.

The fake synthesizer follows the `Synthesizer` contract (checks `should_stop` every decode step, honours the seed,
streams `AudioChunk`-shaped chunks whose concatenation equals `synthesize`) but costs nothing, and
lets a test hold every worker at a gate to build up a queue on purpose.
"""
from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

SAMPLES_PER_STEP = 320


@dataclass
class FakeChunk:
    samples: np.ndarray
    sample_rate: int
    segment: int
    is_last: bool


@dataclass
class FakeVoice:
    name: str
    content_hash: str = ""

    def __post_init__(self) -> None:
        self.content_hash = self.content_hash or hashlib.sha256(self.name.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FakeParams:
    seed: int | None = None
    max_new_tokens: int = 1500
    first_chunk_tokens: int = 2
    chunk_tokens: int = 4


class FakeBundle:
    """Immutable like the real bundle; `with_weights` returns a different (tagged) bundle."""

    sample_rate = 32000

    def __init__(self, tag: str = "base") -> None:
        self.tag = tag

    def with_weights(self, gpt: str | None, sovits: str | None) -> FakeBundle:
        return FakeBundle(tag=f"{gpt}|{sovits}")


@dataclass
class FakeControl:
    """Knobs and counters shared by every synthesizer a factory makes."""

    step_delay: float = 0.0
    gate: threading.Event = field(default_factory=threading.Event)
    steps: int = 0
    started: int = 0
    fail_with: Exception | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.set()  # open unless a test closes it


class FakeSynthesizer:
    def __init__(self, bundle: FakeBundle, control: FakeControl) -> None:
        self.bundle = bundle
        self.control = control

    def _rng(self, text: str, voice: FakeVoice, params: FakeParams) -> np.random.Generator:
        key = f"{self.bundle.tag}|{voice.content_hash}|{text}|{params.seed}"
        return np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16))

    def _steps(self, text: str, voice: FakeVoice, params: FakeParams,
               should_stop: Callable[[], bool] | None) -> Iterator[np.ndarray]:
        c = self.control
        with c.lock:
            c.started += 1
        if c.fail_with is not None:
            raise c.fail_with
        rng = self._rng(text, voice, params)
        for _ in range(min(len(text) * 2, params.max_new_tokens)):
            if should_stop is not None and should_stop():
                return
            for _ in range(2000):  # bounded wait at the gate (tests release it)
                if c.gate.wait(0.005):
                    break
            if c.step_delay:
                time.sleep(c.step_delay)
            with c.lock:
                c.steps += 1
            yield (rng.standard_normal(SAMPLES_PER_STEP) * 0.1).astype(np.float32)

    def stream(self, text: str, voice: FakeVoice, params: FakeParams,
               should_stop: Callable[[], bool] | None = None) -> Iterator[FakeChunk]:
        pending: list[np.ndarray] = []
        size = params.first_chunk_tokens
        for block in self._steps(text, voice, params, should_stop):
            pending.append(block)
            if len(pending) >= size:
                yield FakeChunk(np.concatenate(pending), self.bundle.sample_rate, 0, False)
                pending, size = [], params.chunk_tokens
        tail = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        yield FakeChunk(tail, self.bundle.sample_rate, 0, True)

    def synthesize(self, text: str, voice: FakeVoice, params: FakeParams,
                   should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        blocks = list(self._steps(text, voice, params, should_stop))
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def fake_factory(control: FakeControl) -> Callable[[FakeBundle], FakeSynthesizer]:
    return lambda bundle: FakeSynthesizer(bundle, control)


@pytest.fixture
def fake_control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def fakes():
    """The fake classes, for tests that build their own voices/params."""
    from types import SimpleNamespace

    return SimpleNamespace(Voice=FakeVoice, Params=FakeParams, Bundle=FakeBundle, Chunk=FakeChunk,
                           factory=fake_factory, samples_per_step=SAMPLES_PER_STEP)


@pytest.fixture(scope="session")
def tiny_bundle():
    from gpt_sovits.pipeline import ModelBundle

    return ModelBundle.random_tiny(seed=0)


@pytest.fixture(scope="session")
def ge2e():
    """The speaker encoder, loaded once (None if its weights are not installed)."""
    try:
        import speaker_encoder

        return speaker_encoder.load()[0]
    except Exception:  # pragma: no cover - depends on the resemblyzer package
        return None


# ------------------------------------------------ API test helpers (real app on tiny random models)
VOICE_DIR = Path(__file__).resolve().parent.parent / "data" / "voices"


class SynthControl:
    """Shared by every `GatedSynthesizer` of one app: gates, counters and the sessions seen."""

    def __init__(self) -> None:
        self.start_gate = threading.Event()
        self.after_first_gate = threading.Event()
        self.start_gate.set()
        self.after_first_gate.set()
        self.sessions: list[object] = []
        self.outputs: list[tuple[tuple, np.ndarray]] = []
        """(text, seed, voice hash) -> float audio of every whole-file synthesis, in order."""
        self.first_chunk_sent = threading.Event()
        self.lock = threading.Lock()

    def _track(self, should_stop):
        owner = getattr(should_stop, "__self__", None)
        if owner is not None:
            with self.lock:
                self.sessions.append(owner)


class GatedSynthesizer:
    """The real `Synthesizer`, with test gates: hold jobs before they start, or after the first chunk."""

    def __init__(self, inner, control: SynthControl) -> None:
        self.inner, self.control = inner, control

    def synthesize(self, text, voice, params, should_stop=None):
        self.control._track(should_stop)
        assert self.control.start_gate.wait(30), "test gate never opened"
        audio = self.inner.synthesize(text, voice, params, should_stop=should_stop)
        with self.control.lock:
            self.control.outputs.append(((text, params.seed, voice.content_hash), audio.copy()))
        return audio

    def stream(self, text, voice, params, should_stop=None):
        self.control._track(should_stop)
        assert self.control.start_gate.wait(30), "test gate never opened"
        for i, chunk in enumerate(self.inner.stream(text, voice, params, should_stop=should_stop)):
            yield chunk
            if i == 0:
                self.control.first_chunk_sent.set()
                assert self.control.after_first_gate.wait(30), "test gate never opened"


def make_settings(tmp_path: Path, **overrides):
    from serving.settings import Settings

    values = dict(data_dir=tmp_path / "data", random_weights=True, rate_limit_per_minute=0,
                  max_concurrent_decodes=1, workers=1, drain_timeout_s=10.0)
    values.update(overrides)
    return Settings(_env_file=None, **values)


def make_app(tmp_path: Path, bundle, encoder=None, control: SynthControl | None = None, **settings):
    """A real app (tiny random models, real registry) whose synthesizers honour `control`'s gates."""
    from gpt_sovits.pipeline import Synthesizer
    from serving.app import Overrides, create_app
    from serving.storage import SQLiteFileStore
    from serving.voices import VoiceService

    control = control or SynthControl()

    def voices(s, bundles):
        service = VoiceService(SQLiteFileStore(s.data_dir), bundles, encoder, s)
        service.start()
        return service

    app = create_app(make_settings(tmp_path, **settings), Overrides(
        bundle=bundle, voice_service=voices,
        synthesizer_factory=lambda b: GatedSynthesizer(Synthesizer(b), control),
    ))
    app.state.control = control
    return app


def wait_ready(get, timeout_s: float = 120.0) -> None:
    """Poll /readyz (bounded) until the app has loaded and warmed up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the app did not become ready")


@contextlib.contextmanager
def running(app):
    """TestClient with the lifespan running and the app ready."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        wait_ready(client.get)
        yield client


@contextlib.contextmanager
def live_server(app):
    """The app on a real loopback socket (uvicorn in a thread), for streaming and drain tests."""
    import httpx
    import uvicorn

    from scripts.serve_cmds import make_server

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = make_server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with httpx.Client(base_url=url, timeout=60) as http:
            wait_ready(http.get)
        yield server, url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def upload_voice(client, name: str = "en_slt", headers: dict | None = None, **data) -> dict:
    """Create a voice from a bundled 4-8 s test reference; returns the JSON body."""
    ref = VOICE_DIR / name / "ref.flac"
    form = {"name": name, "language": "en", "transcript": (VOICE_DIR / name / "ref.txt").read_text().strip()}
    form.update(data)
    resp = client.post("/v1/voices", files={"file": (ref.name, ref.read_bytes(), "audio/flac")}, data=form,
                       headers=headers or {})
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture(scope="session")
def helpers():
    """API helpers as one namespace (importlib import mode: test modules cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(make_app=make_app, running=running, live_server=live_server,
                           upload_voice=upload_voice, SynthControl=SynthControl, voice_dir=VOICE_DIR,
                           wait_ready=wait_ready)
