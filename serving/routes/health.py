"""Liveness, readiness, Prometheus metrics and server info (no authentication)."""
from __future__ import annotations

import typing

from fastapi import APIRouter, Response

from serving.audio_encoding import STREAMABLE_FORMATS, supported_formats
from serving.errors import error_response
from serving.metrics import CONTENT_TYPE_LATEST
from serving.protocol import ErrorResponse, HealthStatus, Language, ServerInfo
from serving.routes.deps import State

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthStatus, summary="Liveness: the process serves HTTP")
async def healthz(state: State) -> HealthStatus:
    engine = state.engine
    if engine is not None and state.phase == "ready" and not engine.alive():
        return HealthStatus(status="failed", detail="a synthesis worker thread died")
    return HealthStatus(status="ok", detail=state.phase)


@router.get("/readyz", response_model=HealthStatus, responses={503: {"model": ErrorResponse}},
            summary="Readiness: models loaded, warm-up passed, workers alive, not draining")
async def readyz(state: State) -> typing.Any:
    engine = state.engine
    if state.phase == "ready" and engine is not None and engine.ready and engine.alive():
        return HealthStatus(status="ready")
    reason = {
        "starting": "models are loading / warming up",
        "draining": "the server is shutting down",
        "failed": f"start-up failed: {state.detail}",
    }.get(state.phase, "synthesis workers are not running")
    return error_response(503, "not_ready", f"Not ready: {reason}.", retry_after=5)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/info", response_model=ServerInfo, summary="What this server can do")
async def info(state: State) -> ServerInfo:
    return ServerInfo(
        random_weights=state.random_weights, model=state.model, sample_rate=state.sample_rate,
        formats=sorted(supported_formats()), stream_formats=sorted(STREAMABLE_FORMATS),
        auth_required=state.auth.enabled, max_text_chars=state.settings.max_text_chars,
        languages=list(typing.get_args(Language)),
    )
