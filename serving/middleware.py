"""Pure-ASGI middleware: body-size limits and request/error metrics.

Pure ASGI (not `BaseHTTPMiddleware`) so streaming responses pass through untouched and a
client disconnect still reaches the route.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_body
from serving.metrics import Metrics

ERROR_CODE_HEADER = b"x-error-code"
"""Every JSON error response carries its code in this header too (cheap to read for metrics)."""


class BodyLimitMiddleware:
    """413 for bodies above the limit: from Content-Length up front, or while streaming in.

    `limit_for(method, path)` gives the byte cap of one request (uploads get a bigger one).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_json(send, 413, "payload_too_large",
                             f"Request body is {declared} bytes; the limit for this endpoint is {limit} bytes.")
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body parsing; our handler shapes it.
                    raise HTTPException(413, f"Request body exceeds the limit of {limit} bytes for this endpoint.")
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (ERROR_CODE_HEADER, code.encode()), (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Counts requests by route template/method/status and errors by their code."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {}

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == ERROR_CODE_HEADER:
                        seen["code"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            status = seen.get("status", 500)
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(route=template, method=scope["method"], status=str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(code=seen.get("code", f"http_{status}")).inc()
