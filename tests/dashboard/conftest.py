"""Real Chromium (Debian's, driven by Playwright) against a real ``orchestrator serve``.

One browser and one server per module; each test gets a fresh browser context
(no shared cookies or storage) and fails if the page logged an error to its console.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.server_process import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
API = "/api/v1"
# As the machine's own probe starts it: no background traffic to a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope, not session: Playwright's sync API keeps an event loop running in this
# thread while it is open, and the async tests of other modules need the thread's loop.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: `make test` installs it (make browser)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


class Console:
    """What a page wrote to its console, and the errors it threw."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def on_message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url')})")

    def on_error(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Browser, console: Console, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page at 1280 px; the test fails if the page logged a console error
    (a test that breaks the link on purpose empties ``console.errors`` when it expects
    them)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.on("console", console.on_message)
    tab.on("pageerror", console.on_error)
    yield tab
    context.close()
    if not getattr(request.node, "rep_call_failed", True):
        assert console.errors == [], "the page logged errors:\n" + "\n".join(console.errors)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call_failed = report.failed  # type: ignore[attr-defined]
    return report


def dashboard_server(tmp: Path) -> ServerProcess:
    return ServerProcess(
        {
            "ORCHESTRATOR_HOME": str(tmp / "home"),
            "LOG_LEVEL": "WARNING",
            "WORKSPACE_ROOTS": tempfile.gettempdir(),
        },
        tmp / "server",
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server for the module's tests, engine off: the tests move sessions by hand."""
    with dashboard_server(tmp_path_factory.mktemp("dashboard")) as running:
        running.start()
        yield running


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url + API, timeout=10.0) as client:
        yield client


def screenshot(page: Page, name: str) -> None:
    """Keep a picture of the page for the README (docs/screenshots/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
