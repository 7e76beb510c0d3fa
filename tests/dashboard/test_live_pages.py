"""The dashboard in Chromium against a real server: pages render the server's real data
and follow changes made through the API without a reload."""

from __future__ import annotations

import random
import re
from typing import Any
from uuid import uuid4

import httpx
from playwright.sync_api import Page, expect

from industrial_orchestrator.domain.money import format_usd
from tests.domain.test_money import CASES as MONEY_CASES
from tests.server_process import ServerProcess

from .conftest import Console, screenshot


def _session(api: httpx.Client, title: str, **fields: Any) -> dict[str, Any]:
    response = api.post(
        "/sessions", json={"title": title, "initial_prompt": "Split the module", **fields}
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def _act(api: httpx.Client, session_id: str, verb: str) -> dict[str, Any]:
    response = api.post(f"/sessions/{session_id}/{verb}")
    assert response.status_code in (200, 201), response.text
    data: dict[str, Any] = response.json()
    return data


def _mark_loaded(page: Page) -> None:
    """Leave a mark in the page's JavaScript state: a reload would wipe it."""
    page.evaluate("window.__notReloaded = true")


def _still_loaded(page: Page) -> bool:
    return bool(page.evaluate("window.__notReloaded === true"))


def _live(page: Page) -> None:
    expect(page.locator("#link-state")).to_have_attribute("data-state", "up")


def test_the_overview_follows_a_transition_made_through_the_api(
    page: Page, server: ServerProcess, api: httpx.Client
) -> None:
    title = f"Overview live {uuid4().hex[:6]}"
    page.goto(server.base_url + "/")
    _live(page)
    running = page.locator('[data-counter="RUNNING"] .counter-value')
    before = int(running.inner_text())
    _mark_loaded(page)

    session = _session(api, title)
    _act(api, session["id"], "start")

    expect(running).to_have_text(str(before + 1))
    activity = page.locator("#activity tbody tr").first
    expect(activity).to_contain_text(title)
    expect(activity).to_contain_text("PENDING → RUNNING")
    assert _still_loaded(page)
    screenshot(page, "overview")


def test_the_session_page_follows_transitions_and_offers_only_valid_verbs(
    page: Page, server: ServerProcess, api: httpx.Client
) -> None:
    session = _session(api, f"Detail live {uuid4().hex[:6]}", priority="HIGH")
    page.goto(f"{server.base_url}/sessions/{session['id']}")
    _live(page)
    _mark_loaded(page)
    head = page.locator(".session-head")
    expect(head).to_have_attribute("data-status", "PENDING")

    def enabled(verb: str) -> bool:
        return page.locator(f'button[data-verb="{verb}"]').is_enabled()

    assert [v for v in ("start", "pause", "resume", "stop", "retry", "cancel") if enabled(v)] == [
        "start",
        "cancel",
    ]

    _act(api, session["id"], "start")  # through the API: the page is told, not reloaded
    expect(head).to_have_attribute("data-status", "RUNNING")
    expect(page.locator(".session-head .badge")).to_contain_text("RUNNING")
    assert [v for v in ("start", "pause", "resume", "stop", "retry", "cancel") if enabled(v)] == [
        "pause",
        "stop",
    ]
    expect(page.locator("#terminal")).to_contain_text("PENDING → RUNNING")

    # And from the page: its buttons drive the real API.
    page.locator('button[data-verb="pause"]').click()
    expect(head).to_have_attribute("data-status", "PAUSED")
    assert api.get(f"/sessions/{session['id']}").json()["status"] == "PAUSED"
    page.locator('button[data-verb="stop"]').click()
    expect(head).to_have_attribute("data-status", "STOPPED")
    assert enabled("retry")
    assert _still_loaded(page)

    # A retry is a new session; the page goes there and shows where it came from.
    page.locator('button[data-verb="retry"]').click()
    expect(page.locator("#retry-of")).to_have_text(session["id"][:8])
    retried = api.get(f"/sessions/{session['id']}").json()
    assert retried["status"] == "STOPPED"


def test_a_session_created_from_the_form_is_recorded_and_shown(
    page: Page, server: ServerProcess, api: httpx.Client, tmp_path: Any
) -> None:
    workspace = tmp_path / "repo"
    workspace.mkdir()
    title = f"Form session {uuid4().hex[:6]}"
    page.goto(server.base_url + "/sessions")
    page.get_by_role("button", name="+ NEW SESSION").click()
    expect(page.locator("#f-title")).to_be_focused()
    page.fill("#f-title", title)
    page.fill("#f-prompt", "Add rate limiting to the login route")
    page.select_option("#f-priority", "CRITICAL")
    page.fill("#f-workspace", str(workspace))
    page.fill("#f-verify", "pytest -q")
    page.fill("#f-tokens", "50000")
    page.fill("#f-cost", "2.5")
    screenshot(page, "new-session-form")
    page.get_by_role("button", name="DISPATCH").click()

    expect(page).to_have_url(re.compile(r"/sessions/[0-9a-f-]{36}$"))
    session_id = page.url.rsplit("/", 1)[1]
    stored = api.get(f"/sessions/{session_id}").json()
    assert stored["title"] == title
    assert stored["priority"] == "CRITICAL"
    assert stored["workspace"] == str(workspace)
    assert stored["options"]["verify_command"] == "pytest -q"
    assert stored["options"]["max_tokens"] == 50000
    assert stored["options"]["max_cost_usd"] == 2.5
    assert stored["status"] == "PENDING"
    expect(page.locator(".session-title h1")).to_have_text(title)


def test_invalid_input_shows_the_apis_own_messages_next_to_the_fields(
    page: Page, server: ServerProcess, api: httpx.Client, console: Console
) -> None:
    bad = {"title": "   ", "initial_prompt": "x", "max_tokens": "lots", "priority": "MEDIUM"}
    expected = api.post("/sessions", json=bad).json()
    messages = {problem["field"]: problem["message"] for problem in expected["details"]}
    assert set(messages) == {"title", "max_tokens"}

    page.goto(server.base_url + "/sessions#new")
    page.fill("#f-title", "   ")
    page.fill("#f-prompt", "x")
    page.fill("#f-tokens", "lots")
    page.get_by_role("button", name="DISPATCH").click()
    expect(page.locator('[data-error-for="title"]')).to_have_text(messages["title"])
    expect(page.locator('[data-error-for="max_tokens"]')).to_have_text(messages["max_tokens"])
    expect(page.locator("#form-error")).to_have_text(expected["message"])
    expect(page.locator("#f-title")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "new-session-errors")

    # A refusal that is not about the schema is placed too: a workspace outside the roots.
    outside = {"title": "t", "initial_prompt": "x", "workspace": "/proc/definitely-not"}
    refusal = api.post("/sessions", json=outside).json()
    page.fill("#f-title", "t")
    page.fill("#f-tokens", "")
    page.fill("#f-workspace", "/proc/definitely-not")
    page.get_by_role("button", name="DISPATCH").click()
    expect(page.locator('[data-error-for="workspace"]')).to_have_text(refusal["message"])
    expect(page.locator('[data-error-for="title"]')).to_have_text("")
    # Nothing was created by the refused attempts.
    assert api.get("/sessions", params={"q": "definitely"}).json()["total"] == 0
    # Chromium notes every 4xx answer in the console: the two refusals, and nothing else.
    assert len(console.errors) == 2
    assert all("status of 422" in error for error in console.errors), console.errors
    console.errors.clear()


def test_status_chips_filter_by_several_states_and_the_list_follows_new_sessions(
    page: Page, server: ServerProcess, api: httpx.Client
) -> None:
    tag = uuid4().hex[:8]
    pending = _session(api, f"{tag} waiting")
    running = _session(api, f"{tag} working")
    _act(api, running["id"], "start")
    cancelled = _session(api, f"{tag} dropped")
    _act(api, cancelled["id"], "cancel")

    page.goto(f"{server.base_url}/sessions?q={tag}")
    _live(page)
    rows = page.locator("#sessions-table tbody tr")
    expect(rows).to_have_count(3)

    page.locator('[data-chip="RUNNING"]').click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-session", running["id"])
    expect(page.locator('[data-chip="RUNNING"]')).to_have_attribute("aria-current", "true")

    page.locator('[data-chip="CANCELLED"]').click()
    expect(rows).to_have_count(2)
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.status)")) == [
        "CANCELLED",
        "RUNNING",
    ]
    assert "status=RUNNING" in page.url
    assert "status=CANCELLED" in page.url

    page.locator('[data-chip="RUNNING"]').click()  # off again
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-session", cancelled["id"])

    # The filtered list follows the API: a session moving into a chosen state appears.
    _mark_loaded(page)
    _act(api, pending["id"], "cancel")
    expect(rows).to_have_count(2)
    assert _still_loaded(page)

    page.locator('[data-chip="ALL"]').click()
    expect(rows).to_have_count(3)
    screenshot(page, "sessions")


def test_pages_of_sessions_are_navigable_and_show_priorities(
    page: Page, server: ServerProcess, api: httpx.Client
) -> None:
    tag = uuid4().hex[:8]
    for number in range(23):
        _session(api, f"{tag} bulk {number:02d}", priority="LOW" if number % 2 else "CRITICAL")
    page.goto(f"{server.base_url}/sessions?q={tag}")
    rows = page.locator("#sessions-table tbody tr")
    expect(rows).to_have_count(20)
    expect(page.locator("#list-summary")).to_contain_text("23 sessions")
    expect(page.locator("#sessions-table .prio-CRITICAL").first).to_be_visible()
    page.get_by_role("link", name="NEXT →").click()
    expect(rows).to_have_count(3)
    expect(page.locator("#list-summary")).to_contain_text("page 2 of 2")
    # Newest first: the last page holds the first three created.
    expect(rows.first).to_contain_text(f"{tag} bulk 02")


def test_the_form_and_the_chips_work_from_the_keyboard(page: Page, server: ServerProcess) -> None:
    page.goto(server.base_url + "/sessions")
    toggle = page.locator("#new-session-toggle")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#new-session")).to_be_visible()
    expect(page.locator("#f-title")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#new-session")).to_be_hidden()
    expect(toggle).to_be_focused()
    chip = page.locator('[data-chip="FAILED"]')
    chip.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"status=FAILED"))


def test_pages_fit_a_narrow_screen(page: Page, server: ServerProcess, api: httpx.Client) -> None:
    session = _session(api, f"Narrow {uuid4().hex[:6]}")
    page.set_viewport_size({"width": 390, "height": 844})
    for path, name in [
        ("/", "overview-narrow"),
        ("/sessions", "sessions-narrow"),
        (f"/sessions/{session['id']}", "session-narrow"),
    ]:
        page.goto(server.base_url + path)
        _live(page)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow}px wider than a 390px screen"
        screenshot(page, name)


def test_a_checkpoint_forks_into_a_new_session_from_the_timeline(
    page: Page, server: ServerProcess, api: httpx.Client, console: Console
) -> None:
    session = _session(api, f"Fork me {uuid4().hex[:6]}", auto_start=True)
    made = api.post(f"/sessions/{session['id']}/checkpoints", json={"label": "before the refactor"})
    assert made.status_code == 201, made.text
    page.goto(f"{server.base_url}/sessions/{session['id']}")
    _live(page)
    page.locator(f'button[data-fork="{made.json()["id"]}"]').click()
    dialog = page.locator("#fork-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#fork-checkpoint-label")).to_have_text("before the refactor")
    page.fill("#fork-amendment", "Keep the public API unchanged.")
    page.fill("#fork-agents", "nobody-of-that-name")
    page.fill("#fork-tokens", "5000")
    page.click("#fork-submit")
    # The API's own message, next to the field it concerns; nothing was made.
    expect(page.locator('[data-error-for="agents"]')).to_contain_text("nobody-of-that-name")
    expect(page.locator("#fork-agents")).to_have_attribute("aria-invalid", "true")
    assert api.get(f"/sessions/{session['id']}/lineage").json()["forks"] == []
    assert [e for e in console.errors if "status of 422" not in e] == []
    console.errors.clear()
    page.fill("#fork-agents", "")
    page.click("#fork-submit")
    # The fork is a new session; its page says where it came from, and the source's
    # page lists it.
    expect(page.locator("#forked-from")).to_have_text(session["id"][:8])
    fork_id = page.url.rsplit("/", 1)[-1]
    fork = api.get(f"/sessions/{fork_id}").json()
    assert (fork["forked_from"], fork["restored_from_checkpoint"]) == (
        session["id"],
        made.json()["id"],
    )
    assert fork["options"]["amendment"] == "Keep the public API unchanged."
    assert fork["options"]["max_tokens"] == 5000
    assert fork["initial_prompt"].endswith("Keep the public API unchanged.")
    page.goto(f"{server.base_url}/sessions/{session['id']}")
    expect(page.locator("#forks a")).to_have_text([fork_id[:8]])


def test_the_script_shows_money_by_the_same_rule_as_the_server(
    page: Page, server: ServerProcess
) -> None:
    """``Orchestrator.usd`` (the terminal's usage lines) against ``format_usd`` (CLI and
    templates): one rule, the same digits, ties and sub-cent amounts included."""
    rng = random.Random(20)
    amounts = [amount for amount, _ in MONEY_CASES]
    amounts += [rng.random() * 10 ** rng.randint(-6, 5) for _ in range(2000)]
    amounts += [n / 1000 + 0.0005 for n in range(500)]  # ties at the last digit
    page.goto(server.base_url + "/")
    shown = page.evaluate("(amounts) => amounts.map(Orchestrator.usd)", amounts)
    expected = [format_usd(amount) for amount in amounts]
    differ = [
        (amount, js, py)
        for amount, js, py in zip(amounts, shown, expected, strict=True)
        if js != py
    ]
    assert differ == []
