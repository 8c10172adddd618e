"""Thin routers, one module per resource; `include_routers` attaches them all to an app."""
from __future__ import annotations

from fastapi import FastAPI


def include_routers(app: FastAPI) -> None:
    from serving.routes import health, openai, tts, voices, web, ws
    from serving.routes.docs import install_docs

    for module in (voices, tts, openai, ws, health, web):
        app.include_router(module.router)
    install_docs(app)
