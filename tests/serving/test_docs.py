"""/docs and /redoc work offline: every script, style and icon they load comes from this server."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.routes import docs


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The app without its lifespan: the docs need no models."""
    from serving.app import create_app
    from serving.settings import Settings

    return TestClient(create_app(Settings(_env_file=None, data_dir=tmp_path / "data", random_weights=True)))


def _loaded_urls(html: str) -> list[str]:
    """Every URL the page makes the browser fetch: src/href attributes and the JS `url:` option."""
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""url\s*:\s*['"]([^'"]+)['"]""", html)
    return urls


def test_swagger_ui_page_references_only_local_urls(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = _loaded_urls(page.text)
    assert f"{docs.ASSETS_PREFIX}/{docs.SWAGGER_JS}" in urls
    assert f"{docs.ASSETS_PREFIX}/{docs.SWAGGER_CSS}" in urls
    assert "/openapi.json" in urls
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "http://" not in page.text and "https://" not in page.text


def test_redoc_page_references_only_local_urls(client: TestClient) -> None:
    page = client.get("/redoc")
    assert page.status_code == 200
    urls = _loaded_urls(page.text)
    assert f"{docs.ASSETS_PREFIX}/{docs.REDOC_JS}" in urls
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "fonts.googleapis" not in page.text


@pytest.mark.parametrize(("name", "media_type"), [
    (docs.SWAGGER_JS, "text/javascript"), (docs.SWAGGER_CSS, "text/css"),
    (docs.REDOC_JS, "text/javascript"), (docs.FAVICON, "image/png"),
])
def test_assets_are_served_from_the_package(client: TestClient, name: str, media_type: str) -> None:
    folder = docs.assets_dir()
    assert folder is not None, "fastapi-offline (serve extra) must be installed"
    resp = client.get(f"{docs.ASSETS_PREFIX}/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(media_type)
    assert resp.content == (folder / name).read_bytes()


def test_swagger_bundle_is_swagger_ui(client: TestClient) -> None:
    """The JS really is Swagger UI (it defines SwaggerUIBundle, which the page calls)."""
    page = client.get("/docs").text
    bundle = client.get(f"{docs.ASSETS_PREFIX}/{docs.SWAGGER_JS}").text
    assert "SwaggerUIBundle(" in page and "SwaggerUIBundle" in bundle


@pytest.mark.parametrize("name", ["../core.py", "nope.js", "..%2Fcore.py", "swagger-ui.css.map"])
def test_only_the_known_assets_are_served(client: TestClient, name: str) -> None:
    resp = client.get(f"{docs.ASSETS_PREFIX}/{name}")
    assert resp.status_code == 404


def test_docs_pages_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert not {p for p in paths if p.startswith(("/docs", "/redoc", docs.ASSETS_PREFIX))}


def test_without_the_package_the_pages_fall_back_to_the_cdn(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(docs, "assets_dir", lambda: None)
    from serving.app import create_app
    from serving.settings import Settings

    client = TestClient(create_app(Settings(_env_file=None, data_dir=tmp_path / "d", random_weights=True)))
    page = client.get("/docs")
    assert page.status_code == 200 and "https://" in page.text
    assert client.get(f"{docs.ASSETS_PREFIX}/{docs.SWAGGER_JS}").status_code == 404
