"""The webhooks page in real Chromium against a real server and a receiver on loopback:
a webhook is created from the form (the API's own message next to a bad field first),
its secret shown once, a test delivery sent and seen in the log, paused and deleted."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.server_process import ServerProcess

from .conftest import Console, screenshot


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_a_webhook_is_made_tested_paused_and_deleted_from_the_page(
    page: Page, server: ServerProcess, api: httpx.Client, receiver: Receiver, console: Console
) -> None:
    name = f"ops-{uuid4().hex[:6]}"
    page.goto(server.base_url + "/webhooks")
    expect(page.locator("#link-state")).to_have_attribute("data-state", "up")
    page.click("#new-webhook-toggle")
    page.fill("#w-name", name)
    page.fill("#w-url", "ftp://example.com/hook")
    page.check('input[data-event="session.finished"]')
    page.check('input[data-event="agent.degraded"]')
    page.click("#create-webhook")
    expect(page.locator('[data-error-for="url"]')).not_to_be_empty()
    expect(page.locator("#w-url")).to_have_attribute("aria-invalid", "true")
    assert all(hook["name"] != name for hook in api.get("/webhooks").json())
    assert len(console.errors) == 1
    assert "status of 422" in console.errors[0], console.errors
    console.errors.clear()

    page.fill("#w-url", receiver.url)
    page.click("#create-webhook")
    expect(page.locator("#webhook-secret")).to_be_visible()
    secret = page.locator("#webhook-secret-value").inner_text().strip()
    assert len(secret) >= 16
    hook = next(h for h in api.get("/webhooks").json() if h["name"] == name)
    assert sorted(hook["events"]) == ["agent.degraded", "session.finished"]
    assert "secret" not in hook
    panel = page.locator(f'section[data-webhook="{name}"]')
    expect(panel.locator(".webhook-state")).to_have_text("ACTIVE")

    panel.locator('button[data-webhook-action="test"]').click()
    # Sent by the server's webhook loop, signed with the secret the page showed once.
    expect(panel.locator(".delivery-status").first).to_have_text("DELIVERED", timeout=15_000)
    headers, body = receiver.bodies[-1]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-orchestrator-signature"] == f"sha256={expected}"
    screenshot(page, "webhooks")

    panel.locator('button[data-webhook-action="pause"]').click()
    expect(panel.locator(".webhook-state")).to_have_text("PAUSED")
    expect(panel.locator('button[data-webhook-action="test"]')).to_be_disabled()
    assert api.get(f"/webhooks/{hook['id']}").json()["active"] is False

    page.once("dialog", lambda dialog: dialog.accept())
    panel.locator('button[data-webhook-action="delete"]').click()
    expect(panel).to_have_count(0)
    assert api.get(f"/webhooks/{hook['id']}").status_code == 404
