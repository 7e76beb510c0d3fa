"""The live terminal across a server restart: "UPLINK FAILED" while the server is gone,
then every line once, in order, from where the page stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.server_process import ServerProcess

from .conftest import API, Console, dashboard_server, screenshot


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of this test's own: the test kills it. Ask for it before ``page``, so the
    page is closed before the server stops (a request cut off would be a console error)."""
    with dashboard_server(tmp_path) as running:
        running.start()
        yield running


def _log(api: httpx.Client, session_id: str, text: str) -> None:
    response = api.post(f"{API}/sessions/{session_id}/logs", json={"stream": "agent", "text": text})
    assert response.status_code == 201, response.text


def _terminal_lines(page: Page) -> list[tuple[int, str]]:
    rows: list[list[object]] = page.locator("#terminal .line").evaluate_all(
        "lines => lines.map(l => [l.dataset.seq, l.querySelector('.line-text').textContent])"
    )
    return [(int(str(seq)), str(text)) for seq, text in rows]


def test_the_terminal_streams_lines_in_order_and_catches_up_after_a_restart(
    own_server: ServerProcess, page: Page, console: Console
) -> None:
    with own_server.client() as api:
        created = api.post(
            f"{API}/sessions", json={"title": "Terminal", "initial_prompt": "talk"}
        ).json()
        session_id = created["id"]
        for number in range(1, 11):
            _log(api, session_id, f"line {number:03d}")

    page.goto(f"{own_server.base_url}/sessions/{session_id}")
    terminal = page.locator("#terminal")
    expect(terminal).to_contain_text("line 010")
    with own_server.client() as api:
        for number in range(11, 21):  # live, while the page watches
            _log(api, session_id, f"line {number:03d}")
    expect(terminal).to_contain_text("line 020")
    screenshot(page, "session")

    own_server.kill()
    banner = page.locator("#uplink")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("UPLINK FAILED")
    expect(page.locator("#link-state")).to_have_attribute("data-state", "down")
    screenshot(page, "uplink-failed")

    own_server.start()
    with own_server.client() as api:
        for number in range(21, 31):  # written before or after the page is back: both count
            _log(api, session_id, f"line {number:03d}")
    expect(banner).to_be_hidden(timeout=20_000)
    expect(terminal).to_contain_text("line 030")

    lines = _terminal_lines(page)
    seqs = [seq for seq, _ in lines]
    assert seqs == sorted(set(seqs)), "a line was shown twice or out of order"
    assert seqs == list(range(1, len(seqs) + 1)), "a line is missing"
    agent_lines = [text for _, text in lines if text.startswith("line ")]
    assert agent_lines == [f"line {n:03d}" for n in range(1, 31)]
    assert page.locator("#terminal-count").inner_text() == f"{len(lines)} lines"

    # Chromium reports the refused reconnections while the server was down, and a request
    # the kill cut off mid-way (reset); nothing else.
    down = ("ERR_CONNECTION_REFUSED", "ERR_CONNECTION_RESET", "WebSocket connection")
    unexpected = [error for error in console.errors if not any(d in error for d in down)]
    assert unexpected == []
    console.errors.clear()


def test_pause_scroll_keeps_the_view_where_the_operator_left_it(
    own_server: ServerProcess, page: Page
) -> None:
    with own_server.client() as api:
        session_id = api.post(
            f"{API}/sessions", json={"title": "Scrolling", "initial_prompt": "talk"}
        ).json()["id"]
        _log(api, session_id, "\n".join(f"early {n}" for n in range(80)))
        page.goto(f"{own_server.base_url}/sessions/{session_id}")
        terminal = page.locator("#terminal")
        expect(terminal).to_contain_text("early 79")

        def at_bottom() -> bool:
            return bool(terminal.evaluate("t => t.scrollHeight - t.scrollTop - t.clientHeight < 2"))

        assert at_bottom()
        toggle = page.locator("#scroll-toggle")
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        terminal.evaluate("t => { t.scrollTop = 0; }")
        for number in range(5):
            _log(api, session_id, f"late {number}\n" * 20)
        expect(terminal).to_contain_text("late 4")
        assert terminal.evaluate("t => t.scrollTop") == 0
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "false")
        assert at_bottom()
