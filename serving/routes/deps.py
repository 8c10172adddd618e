"""Typed dependencies shared by the routers (state, caller identity, services)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.app import AppState
from serving.auth import Principal
from serving.engine import InferenceEngine
from serving.errors import OverloadedError
from serving.protocol import ErrorResponse
from serving.synthesis import SynthesisService

bearer = HTTPBearer(auto_error=False, description="API key (only when the server has keys configured)")


def get_state(request: Request) -> AppState:
    return request.app.state.gsv


State = Annotated[AppState, Depends(get_state)]


def get_caller(request: Request, state: State,
               creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """Authenticate (401) and rate-limit (429) the caller."""
    principal = state.auth.authenticate_token(creds.credentials if creds else None)
    if principal.authenticated:
        rate_key = principal.rate_key
    else:  # no keys configured: limit per client address instead of one global bucket
        rate_key = "ip:" + (request.client.host if request.client else "unknown")
    state.limiter.check(rate_key)
    return principal


Caller = Annotated[Principal, Depends(get_caller)]


def _not_ready(state: AppState) -> OverloadedError:
    if state.phase == "failed":
        return OverloadedError(f"The server failed to start: {state.detail}", code="not_ready")
    if state.phase == "draining":
        return OverloadedError("The server is shutting down; retry on another instance.",
                               code="shutting_down", retry_after=5)
    return OverloadedError("The server is still loading its models; retry shortly.", code="not_ready",
                           retry_after=5)


def get_voices(state: State) -> Any:
    if state.voices is None:
        raise _not_ready(state)
    return state.voices


def get_synthesis(state: State) -> SynthesisService:
    if state.synthesis is None or state.phase in ("starting", "failed"):
        raise _not_ready(state)
    return state.synthesis


def get_engine(state: State) -> InferenceEngine:
    if state.engine is None:
        raise _not_ready(state)
    return state.engine


Voices = Annotated[Any, Depends(get_voices)]
Synthesis = Annotated[SynthesisService, Depends(get_synthesis)]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (401, "Missing or invalid API key"),
        (404, "Voice not found (or owned by another key)"),
        (413, "Body or text too large"),
        (422, "Invalid request"),
        (429, "Rate limited (see Retry-After)"),
        (503, "Overloaded, starting or draining (see Retry-After)"),
    )
}
