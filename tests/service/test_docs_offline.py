"""/docs and /redoc render in real headless Chromium with every other host unreachable (no CDN)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from netutil import serve_app
from tldrlab.service.app import create_app


@pytest.fixture
def server_url() -> Iterator[str]:
    with serve_app(create_app()) as url:
        yield url


def offline_page(browser: Any, server_url: str) -> tuple[Any, Any, list[str]]:
    """A page whose requests to any host but the server are refused (the network is closed)."""
    context = browser.new_context()
    page = context.new_page()
    local = urlparse(server_url).netloc
    refused: list[str] = []

    def only_local(route: Any) -> None:
        if urlparse(route.request.url).netloc == local:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    return context, page, refused


def test_swagger_ui_renders_offline(browser: Any, server_url: str) -> None:
    context, page, refused = offline_page(browser, server_url)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server_url}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "tldrlab" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/threads" in " ".join(paths) and "/runs" in " ".join(paths)
    finally:
        context.close()
    assert refused == [] and errors == []


def test_redoc_renders_offline(browser: Any, server_url: str) -> None:
    context, page, refused = offline_page(browser, server_url)
    try:
        page.goto(f"{server_url}/redoc")
        page.wait_for_selector("#redoc h1", timeout=30_000)
        assert "tldrlab" in page.inner_text("#redoc h1")
    finally:
        context.close()
    assert refused == []


def test_docs_pages_name_no_other_host(server_url: str) -> None:
    for path in ("/docs", "/redoc"):
        response = httpx.get(f"{server_url}{path}")
        assert response.status_code == 200
        assert "http" not in response.text  # every asset is a path on this server
        assert "cdn" not in response.headers["content-security-policy"]
    assert httpx.get(f"{server_url}/docs/assets/swagger-ui-bundle.js").status_code == 200
    missing = httpx.get(f"{server_url}/docs/assets/..%2Fcore.py")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
