"""FastAPI application factory: `create_app(settings)`.

The lifespan builds every service once and keeps it on `app.state.gsv` (an `AppState`); routes
reach it through typed dependencies (`serving.routes.deps`). Models load in a background thread
so /healthz answers at once while /readyz says "starting" until the models are loaded and one
warm-up synthesis has passed. Shutdown drains: the server stops taking work, lets in-flight
requests finish (up to `drain_timeout_s`), then closes the registry.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI

from serving.auth import ApiKeyAuth
from serving.engine import EngineConfig, InferenceEngine, RequestSession, SynthesizerFactory
from serving.errors import install_error_handlers
from serving.metrics import Metrics
from serving.middleware import BodyLimitMiddleware, MetricsMiddleware
from serving.ratelimit import ConcurrencyLimit, RateLimiter
from serving.settings import Settings
from serving.synthesis import ParamsFactory, SynthesisService, default_params_factory

log = logging.getLogger(__name__)

WARMUP_TEXT = "Hello."
WARMUP_TOKENS = 8


@dataclass
class Overrides:
    """Test/embedding hooks: prebuilt parts instead of the ones the settings describe."""

    bundle: Any = None
    """A loaded `ModelBundle` (tests share one tiny bundle across apps)."""
    synthesizer_factory: SynthesizerFactory | None = None
    params_factory: ParamsFactory | None = None
    voice_service: Callable[[Settings, Any], Any] | None = None
    """Builds the voice service from (settings, bundle provider)."""
    warmup_voice: Callable[[Any], Any] | None = None
    """Makes the warm-up voice from the bundle."""


@dataclass
class AppState:
    """Everything the routes share. Built once per app; nothing in here is per request."""

    settings: Settings
    metrics: Metrics
    auth: ApiKeyAuth
    limiter: RateLimiter
    streams: ConcurrencyLimit
    ingest_limiter: anyio.CapacityLimiter
    phase: str = "starting"
    """starting -> ready -> draining; or failed (with `detail`)."""
    detail: str | None = None
    engine: InferenceEngine | None = None
    voices: Any = None
    synthesis: SynthesisService | None = None
    sample_rate: int = 32000
    model: str | None = None
    """What is loaded, for /v1/info: origin and `ModelBundle.describe()` (no paths); None while loading."""
    loaded: threading.Event = field(default_factory=threading.Event)

    @property
    def random_weights(self) -> bool:
        return self.settings.random_weights

    def begin_drain(self) -> None:
        """Called on SIGTERM before the server stops listening: /readyz fails, new jobs get 503."""
        self.phase = "draining"
        if self.engine is not None:
            self.engine.stop_accepting()


def build_voice_service(settings: Settings, bundles: Any) -> Any:
    from serving.storage import SQLiteFileStore
    from serving.voices import VoiceService

    encoder = None
    if settings.speaker_embeddings:
        try:
            import speaker_encoder

            encoder, _ = speaker_encoder.load()
        except Exception as exc:  # the service works without it; only similarity is lost
            log.warning("speaker encoder unavailable (%s): similar-voice search is off", exc)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = VoiceService(SQLiteFileStore(settings.data_dir), bundles, encoder, settings)
    service.start()
    return service


def load_bundle(settings: Settings) -> Any:
    """The base `ModelBundle` the settings describe (tiny random models with `random_weights`, the
    default base model when nothing is configured); logs where the weights come from.

    Raises `ModelsMissingError` (code model_not_found) naming every missing weight.
    """
    from gpt_sovits.pipeline import ModelBundle

    if settings.random_weights:
        bundle = ModelBundle.random_tiny(device=settings.device)
    else:
        resolved = settings.complete_models()
        files = ", ".join(f"{name}={path}" for name, path in resolved.fields.items() if path is not None)
        log.info("loading models from %s (%s)", resolved.source, files)
        bundle = ModelBundle.from_paths(**resolved.fields, device=settings.device)
    log.info("loaded %s", bundle.describe())
    return bundle


def model_label(settings: Settings, bundle: Any, provided: bool = False) -> str:
    """What /v1/info says is loaded: where from (no paths: the endpoint is public) and what it is."""
    origin = "provided bundle" if provided else settings.resolve_models().label
    describe = getattr(bundle, "describe", None)
    return f"{origin}: {describe()}" if callable(describe) else origin


def warmup_voice(bundle: Any) -> Any:
    """A throwaway reference-free voice made from a synthetic vowel-like tone (no user data)."""
    from gpt_sovits.pipeline import VoicePrompt

    sr = bundle.sample_rate
    t = np.arange(int(4.0 * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return VoicePrompt.from_audio(bundle, tone.astype(np.float32), sr)


def _start_models(state: AppState, overrides: Overrides) -> None:
    """Background start-up: load models, open the registry, start workers, warm up."""
    s = state.settings
    try:
        bundle = overrides.bundle if overrides.bundle is not None else load_bundle(s)
        state.model = model_label(s, bundle, provided=overrides.bundle is not None)
        factory = overrides.synthesizer_factory or PipelineSynthesizers(
            s.backend, s.finetune_pool_size + 1, precision=s.precision, vocoder_precision=s.vocoder_precision)
        engine = InferenceEngine(
            bundle, factory,
            EngineConfig(workers=s.workers, queue_size=s.queue_size, bundle_pool_size=s.finetune_pool_size,
                         request_timeout_s=s.request_timeout_s, batch_max_requests=s.batch_max_requests,
                         batch_wait_ms=s.batch_wait_ms),
            on_finished=lambda sess: _observe(state, sess),
        )
        state.metrics.bind_engine(lambda: engine.queue_depth(), lambda: engine.inflight())
        make_voices = overrides.voice_service or build_voice_service
        state.voices = make_voices(s, engine.pool)
        state.engine, state.sample_rate = engine, engine.sample_rate
        state.synthesis = SynthesisService(engine, state.voices, s,
                                           overrides.params_factory or default_params_factory)
        engine.start()
        if s.warmup:
            params = (overrides.params_factory or default_params_factory)(seed=0, max_new_tokens=WARMUP_TOKENS,
                                                                          text_lang="en")
            engine.warm_up((overrides.warmup_voice or warmup_voice)(bundle), params, WARMUP_TEXT)
        else:
            engine.ready = True
        if state.phase == "starting":
            state.phase = "ready"
        log.info("models loaded and warmed up; ready")
    except Exception as exc:
        log.exception("start-up failed")
        state.phase, state.detail = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        state.loaded.set()


class PipelineSynthesizers:
    """Makes the per-job `Synthesizer` on the runtime `Settings.backend` names.

    A `Synthesizer` is cheap (it only wires the bundle to a decoder), so one is made per job. The
    runtime backend is not cheap (ONNX export/sessions, TensorRT engines, prepared model copies),
    so one is built per bundle, warmed up (streaming window shapes included) and shared by all
    workers. Only "torch" at fp32 with an fp32 vocoder on a CPU bundle runs the bundle's own eager
    models: there a prepared copy would only double the memory and gain nothing.
    """

    def __init__(self, backend: str, capacity: int = 3, *, precision: str = "auto",
                 vocoder_precision: str = "auto") -> None:
        self.backend = backend
        self.capacity = max(1, capacity)
        self.precision, self.vocoder_precision = precision, vocoder_precision
        self._backends: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def backend_for(self, bundle: Any) -> Any | None:
        if (self.backend == "torch" and bundle.device.type == "cpu" and self.precision == "fp32"
                and self.vocoder_precision == "fp32"):
            return None
        with self._lock:  # built once per bundle even when several workers start together
            if bundle.name not in self._backends:
                from serving.backends import make_backend

                backend = make_backend(self.backend, bundle, precision=self.precision,
                                       vocoder_precision=self.vocoder_precision)
                backend.warmup()
                self._backends[bundle.name] = backend
                while len(self._backends) > self.capacity:  # as bounded as the bundle pool
                    self._backends.popitem(last=False)
            self._backends.move_to_end(bundle.name)
            return self._backends[bundle.name]

    def __call__(self, bundle: Any) -> Any:
        from gpt_sovits.pipeline import Synthesizer

        return Synthesizer(bundle, backend=self.backend_for(bundle))


def _observe(state: AppState, session: RequestSession) -> None:
    audio_s = session.audio_samples / max(1, state.sample_rate)
    state.metrics.observe_job(session.status, session.created, session.started, session.first_chunk_at,
                              session.finished, audio_s)


def _body_limit(settings: Settings) -> Callable[[str, str], int]:
    upload_cap = settings.max_upload_bytes + 2 * settings.max_weights_bytes + 1024 * 1024

    def limit_for(method: str, path: str) -> int:
        if method == "POST" and path.rstrip("/") == "/v1/voices":
            return upload_cap
        return settings.max_request_bytes

    return limit_for


def create_app(settings: Settings | None = None, overrides: Overrides | None = None) -> FastAPI:
    """Build the app; nothing is loaded until the lifespan starts (no import-time work)."""
    settings = settings or Settings()
    overrides = overrides or Overrides()
    metrics = Metrics()
    state = AppState(
        settings=settings, metrics=metrics, auth=ApiKeyAuth(settings.api_keys),
        limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
        streams=ConcurrencyLimit(settings.stream_limit),
        ingest_limiter=anyio.CapacityLimiter(settings.max_concurrent_decodes),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starter = threading.Thread(target=_start_models, args=(state, overrides), name="gsv-start",
                                   daemon=True)
        starter.start()
        try:
            yield
        finally:
            await _shutdown(state, starter)

    app = FastAPI(
        title="GPT-SoVITS voice cloning service",
        version="0.1.0",
        description="Clone a voice from about a minute of speech, then synthesize speech with it "
                    "(whole files, chunked streams, WebSocket, or the OpenAI speech API).",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from serving.routes.docs, with local assets
        redoc_url=None,
    )
    app.state.gsv = state
    install_error_handlers(app)
    from serving.routes import include_routers

    include_routers(app)
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limit(settings))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def _shutdown(state: AppState, starter: threading.Thread) -> None:
    """Drain the engine (in-flight jobs finish), then close the registry."""
    state.begin_drain()
    await anyio.to_thread.run_sync(starter.join, state.settings.drain_timeout_s)
    if state.engine is not None:
        drained = await anyio.to_thread.run_sync(state.engine.shutdown, state.settings.drain_timeout_s)
        if not drained:
            log.warning("drain timeout: in-flight synthesis was cancelled")
    close = getattr(state.voices, "close", None)
    if callable(close):
        await anyio.to_thread.run_sync(close)
