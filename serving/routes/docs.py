"""/docs (Swagger UI) and /redoc served from local files, so the API docs work offline.

FastAPI's built-in pages load Swagger UI and ReDoc from a CDN (and a Google font and a favicon
from the web); behind a firewall they stay blank. The `fastapi-offline` package (in the `serve`
extra) ships the same distribution files; this module serves them under `ASSETS_PREFIX` and
renders FastAPI's own page templates pointed at them. Without the package the pages fall back to
the CDN, with a warning in the log, rather than disappearing.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

log = logging.getLogger(__name__)

ASSETS_PREFIX = "/docs-assets"
ASSETS_PACKAGE = "fastapi_offline"
SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON = (
    "swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png",
)
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
_ASSET_CACHE = "public, max-age=86400"  # the files change only when the package is upgraded


def assets_dir() -> Path | None:
    """The folder with the Swagger UI/ReDoc files of the installed package, or None."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    needed = (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON)
    return folder if all((folder / name).is_file() for name in needed) else None


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> bool:
    """Add the docs pages to `app` (created with docs_url=None, redoc_url=None).

    Returns True when the assets are local; False when the pages use the CDN.
    """
    folder = assets_dir()
    if folder is None:
        log.warning("%s is not installed: /docs and /redoc load their scripts from a CDN "
                    "(install the `serve` extra for offline docs)", ASSETS_PACKAGE)
    app.include_router(_router(app, folder, docs_url, redoc_url))
    return folder is not None


def _router(app: FastAPI, folder: Path | None, docs_url: str, redoc_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    oauth2_redirect = f"{docs_url}/oauth2-redirect"

    def asset(request: Request, name: str) -> str | None:
        root = request.scope.get("root_path", "")
        return f"{root}{ASSETS_PREFIX}/{name}" if folder is not None else None

    def openapi_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @router.get(docs_url)
    async def swagger_ui(request: Request) -> HTMLResponse:
        local = {k: v for k, v in (("swagger_js_url", asset(request, SWAGGER_JS)),
                                   ("swagger_css_url", asset(request, SWAGGER_CSS)),
                                   ("swagger_favicon_url", asset(request, FAVICON))) if v}
        return get_swagger_ui_html(openapi_url=openapi_url(request), title=f"{app.title} - API docs",
                                   oauth2_redirect_url=oauth2_redirect,
                                   swagger_ui_parameters=app.swagger_ui_parameters, **local)

    @router.get(oauth2_redirect)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get(redoc_url)
    async def redoc(request: Request) -> HTMLResponse:
        local = {k: v for k, v in (("redoc_js_url", asset(request, REDOC_JS)),
                                   ("redoc_favicon_url", asset(request, FAVICON))) if v}
        return get_redoc_html(openapi_url=openapi_url(request), title=f"{app.title} - ReDoc",
                              with_google_fonts=folder is None, **local)

    if folder is not None:
        files = {name: folder / name for name in (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON)}

        @router.get(ASSETS_PREFIX + "/{name}")
        async def docs_asset(name: str) -> FileResponse:
            path = files.get(name)  # a fixed set: no path from the request reaches the file system
            if path is None:
                raise HTTPException(status_code=404, detail=f"no docs asset named {name!r}")
            return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix],
                                headers={"Cache-Control": _ASSET_CACHE})

    return router
