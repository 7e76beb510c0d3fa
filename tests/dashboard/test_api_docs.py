"""The interactive API reference renders on a machine with no internet: Swagger UI at
/docs and ReDoc at /redoc load their scripts from the server itself, never a CDN."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route

from tests.dashboard.conftest import Console
from tests.server_process import ServerProcess


def _offline(page: Page, server: ServerProcess) -> list[str]:
    """Refuse every request that leaves the server, as a machine with no network would;
    the list returned fills with what the page tried to fetch elsewhere."""
    own = urlsplit(server.base_url).netloc
    elsewhere: list[str] = []

    def handle(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", handle)
    return elsewhere


def test_swagger_ui_renders_offline(page: Page, server: ServerProcess) -> None:
    elsewhere = _offline(page, server)
    page.goto(server.base_url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Industrial Orchestrator" in page.inner_text(".swagger-ui .info .title")
    # Operations are drawn from the server's own OpenAPI document.
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() > 20
    assert elsewhere == []


def test_redoc_renders_offline_and_asks_no_third_party(
    page: Page, server: ServerProcess, console: Console
) -> None:
    elsewhere = _offline(page, server)
    page.goto(server.base_url + "/redoc")
    page.wait_for_selector("redoc h1")
    assert "Industrial Orchestrator" in page.inner_text("redoc h1")
    assert page.locator("redoc [data-section-id^='tag/']").count() > 3
    assert elsewhere == []
    # ReDoc's vendor logo is the one thing it would fetch from elsewhere: the page's
    # policy stops the browser from asking, which the browser reports on the console.
    assert all("Content Security Policy" in error for error in console.errors), console.errors
    console.errors.clear()


@pytest.mark.parametrize("asset", ["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"])
def test_the_reference_assets_are_open_like_the_pages_that_need_them(
    server: ServerProcess, asset: str
) -> None:
    with server.client() as http:
        served = http.get(f"/docs-assets/{asset}")
    assert served.status_code == 200
    assert len(served.content) > 100_000
