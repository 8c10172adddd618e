"""Exception -> JSON error mapping: every 4xx/5xx body is `{"error": {"code", "message"}}`.

Library code raises `GSVError` subclasses carrying a machine-readable `code`; this module is the
one place that turns a code into an HTTP status. Serving-specific failures (auth, limits,
overload) are `ServingError`s that carry their own status and an optional Retry-After.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpt_sovits.errors import GSVError

log = logging.getLogger(__name__)


class ServingError(GSVError):
    """An error of the HTTP layer with its status code (and Retry-After seconds when useful)."""

    code = "serving_error"
    status_code = 400

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        if status_code is not None:
            self.status_code = status_code
        self.retry_after = retry_after


class UnauthorizedError(ServingError):
    code, status_code = "unauthorized", 401


class NotFoundError(ServingError):
    code, status_code = "not_found", 404


class PayloadTooLargeError(ServingError):
    code, status_code = "payload_too_large", 413


class TextTooLongError(ServingError):
    code, status_code = "text_too_long", 413


class RateLimitedError(ServingError):
    code, status_code = "rate_limited", 429


class OverloadedError(ServingError):
    """Capacity is exhausted (queue full, too many streams, draining): retry later."""

    code, status_code = "overloaded", 503


class RequestTimeoutError(ServingError):
    code, status_code = "request_timeout", 504


# Status for codes raised by library modules (gpt_sovits, serving.voices, ...). Codes not listed
# here are request problems the library detected (bad audio, unknown language, ...): 422.
STATUS_BY_CODE: dict[str, int] = {
    "voice_not_found": 404,
    "not_found": 404,
    "voice_exists": 409,
    "duplicate_voice": 409,
    "conflict": 409,
    "payload_too_large": 413,
    "file_too_large": 413,
    "text_too_long": 413,
    "unsupported_media_type": 415,
    "model_not_found": 503,
    "storage_error": 503,
    "cancelled": 499,
}


def status_for(exc: GSVError) -> int:
    """HTTP status for a library error: explicit attribute, then the code table, then 422."""
    explicit = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    if isinstance(explicit, int):
        return explicit
    return STATUS_BY_CODE.get(exc.code, 422)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return {"error": body}


def error_response(status: int, code: str, message: str, *, retry_after: float | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    hdrs = dict(headers or {})
    hdrs["X-Error-Code"] = code  # lets middleware count errors without parsing bodies
    if retry_after is not None:
        hdrs["Retry-After"] = str(max(1, int(round(retry_after))))
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=hdrs)


def describe(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) for any exception; unknown ones are a logged, generic 500."""
    if isinstance(exc, GSVError):
        return status_for(exc), exc.code, str(exc)
    log.error("unhandled error", exc_info=exc)
    return 500, "internal_error", "Internal server error; the failure was logged."


def response_for(exc: BaseException) -> JSONResponse:
    """The JSON error response for any exception."""
    status, code, message = describe(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, code, message, retry_after=getattr(exc, "retry_after", None), headers=headers)


_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited",
    500: "internal_error", 503: "unavailable",
}


def _jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation details without the raw input (it may be huge or binary)."""
    out = []
    for err in exc.errors():
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")),
                    "type": str(err.get("type", ""))})
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers so that no error leaves the app without the JSON error shape."""

    @app.exception_handler(GSVError)
    async def _gsv(_: Request, exc: GSVError) -> JSONResponse:
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _jsonable_errors(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
        message = f"{where}: {first['msg']}" if where else first["msg"]
        return error_response(422, "validation_error", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
        return response_for(exc)
