"""The dashboard behind operator tokens, in Chromium: signing in, working through the
cookie (CSRF token included), live streams over the signed-in WebSocket, a viewer's
read-only view, and signing out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.server_process import ServerProcess, orchestrator_env, run_cli

from .conftest import API, Console, dashboard_server, screenshot


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, str]]:
    """A server asking for tokens (AUTH_REQUIRED on loopback), an operator's token and a
    viewer's."""
    with dashboard_server(tmp_path) as server:
        server.env.update(AUTH_REQUIRED="true", SECRET_KEY="s" * 48)
        server.start()
        env = orchestrator_env(**server.env)
        tokens = []
        for name, role in (("alice", "operator"), ("wall", "viewer")):
            made = run_cli("token", "create", "--name", name, "--role", role, env=env, cwd=tmp_path)
            assert made.returncode == 0, made.stderr
            tokens.append(made.stdout.strip())
        yield server, tokens[0], tokens[1]


def _sign_in(page: Page, base: str, token: str, path: str = "/") -> None:
    page.goto(base + path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#token", token)
    page.get_by_role("button", name="SIGN IN").click()
    expect(page).to_have_url(base + path)


def test_an_operator_signs_in_and_works_live_through_the_cookie(
    guarded: tuple[ServerProcess, str, str], page: Page
) -> None:
    server, operator, _ = guarded
    _sign_in(page, server.base_url, operator, "/sessions")
    expect(page.locator("#who")).to_contain_text("alice")
    expect(page.locator("#link-state")).to_have_attribute("data-state", "up")
    cookies = page.context.cookies()
    [cookie] = [c for c in cookies if c["name"] == "orchestrator_token"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == "", "scripts must not see the token"

    page.get_by_role("button", name="+ NEW SESSION").click()
    page.fill("#f-title", "Made behind the door")
    page.fill("#f-prompt", "p")
    page.get_by_role("button", name="DISPATCH").click()
    expect(page).to_have_url(re.compile(r"/sessions/[0-9a-f-]{36}$"))
    session_id = page.url.rsplit("/", 1)[1]
    page.locator('button[data-verb="start"]').click()  # the API, with the CSRF token
    expect(page.locator(".session-head")).to_have_attribute("data-status", "RUNNING")
    expect(page.locator("#terminal")).to_contain_text("PENDING → RUNNING")

    with server.client() as api:
        shown = api.get(
            f"{API}/sessions/{session_id}", headers={"Authorization": f"Bearer {operator}"}
        )
    assert shown.json()["status"] == "RUNNING"

    page.get_by_role("button", name="SIGN OUT").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(server.base_url + "/sessions")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_a_viewer_reads_the_dashboard_and_cannot_command(
    guarded: tuple[ServerProcess, str, str], page: Page
) -> None:
    server, operator, viewer = guarded
    with server.client() as api:
        made = api.post(
            f"{API}/sessions",
            json={"title": "Watched", "initial_prompt": "p"},
            headers={"Authorization": f"Bearer {operator}"},
        )
    session_id = made.json()["id"]
    _sign_in(page, server.base_url, viewer, f"/sessions/{session_id}")
    expect(page.locator("#who")).to_contain_text("VIEWER")
    expect(page.locator(".controls button:enabled")).to_have_count(0)
    page.goto(server.base_url + "/sessions")
    expect(page.get_by_role("button", name="+ NEW SESSION")).to_be_disabled()
    expect(page.locator(f'[data-session="{session_id}"]')).to_be_visible()


def test_a_wrong_token_is_told_so(
    guarded: tuple[ServerProcess, str, str], page: Page, console: Console
) -> None:
    server, _, _ = guarded
    page.goto(server.base_url + "/login")
    page.fill("#token", "orch_not-a-real-one")
    page.get_by_role("button", name="SIGN IN").click()
    expect(page.locator("#login-error")).to_have_text("That token is unknown or revoked.")
    screenshot(page, "sign-in")
    # Chromium notes the 401 answer of the refused sign-in; nothing else.
    assert len(console.errors) == 1
    assert "status of 401" in console.errors[0]
    console.errors.clear()
