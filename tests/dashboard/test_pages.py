"""The pages as HTML, on both backends: what the server renders for the browser, its
regions (``?fragment=``) and its refusals."""

from __future__ import annotations

import re
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from industrial_orchestrator.dashboard.rendering import CONTENT_SECURITY_POLICY
from industrial_orchestrator.domain.sessions.states import STATE_TABLE
from tests.api.helpers import API, act, create
from tests.api.test_operations import NO_MODEL

pytestmark = pytest.mark.usefixtures("backend")


def _counter(html: str, name: str) -> int:
    match = re.search(
        rf'data-counter="{name}">.*?<span class="counter-value">(\d+)</span>', html, re.S
    )
    assert match, f"no {name} counter in:\n{html}"
    return int(match.group(1))


def _link(html: str, name: str) -> str:
    match = re.search(rf'href="([^"]+)" data-counter="{name}"', html)
    assert match, f"no {name} counter in:\n{html}"
    return match.group(1)


def _success_rate(html: str) -> str:
    match = re.search(r"<dd data-success-rate>([^ <]+)", html)
    assert match, f"no success rate in:\n{html}"
    return match.group(1)


async def test_stopped_and_cancelled_sessions_are_apart_from_the_success_rate(
    client: httpx.AsyncClient,
) -> None:
    counters = (await client.get("/", params={"fragment": "counters"})).text
    assert _success_rate(counters) == "—"
    for action in ("cancel", "cancel", "stop"):
        session = await create(client, auto_start=action == "stop")
        await act(client, session["id"], action)
    counters = (await client.get("/", params={"fragment": "counters"})).text
    assert _success_rate(counters) == "—", "nothing ran to a verdict yet"
    assert _counter(counters, "STOPPED") == 3
    assert "2 of them cancelled" in counters
    for action, fields in (("complete", {}), ("fail", {"reason": "tests red"})):
        session = await create(client, auto_start=True)
        await act(client, session["id"], action, **fields)
    complete = await create(client, auto_start=True)
    await act(client, complete["id"], "complete")
    counters = (await client.get("/", params={"fragment": "counters"})).text
    # 2 completed over 2 completed + 1 failed; the 3 the operator ended do not count.
    assert _success_rate(counters) == "67%"
    assert (_counter(counters, "COMPLETED"), _counter(counters, "FAILED")) == (2, 1)
    assert _counter(counters, "STOPPED") == 3


async def test_costs_are_shown_in_cents_not_float_noise(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    session = await create(client, max_cost_usd=0.5)
    async with app.state.components.uow() as uow:
        # Summed as floats by the database: 0.010000 + 0.013168 is 0.023167999999999998.
        for cost in (0.01, 0.013168):
            await uow.sessions.add_usage(UUID(session["id"]), 100, cost)
        await uow.commit()
    stored = (await client.get(f"{API}/sessions/{session['id']}")).json()["cost_usd"]
    assert stored == pytest.approx(0.023168), "the API keeps the number"
    telemetry = (
        await client.get(f"/sessions/{session['id']}", params={"fragment": "telemetry"})
    ).text
    assert "$0.02 / $0.50" in telemetry
    counters = (await client.get("/", params={"fragment": "counters"})).text
    assert re.search(r"<dt>cost</dt><dd>\$0\.02</dd>", counters), counters
    for html in (telemetry, counters):
        assert "0.0231" not in html
        assert "0.0232" not in html


async def test_every_page_is_html_under_a_strict_content_security_policy(
    client: httpx.AsyncClient,
) -> None:
    session = await create(client)
    for path in ["/", "/sessions", f"/sessions/{session['id']}", "/agents", "/tasks"]:
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "<script>" not in response.text, "inline script would break the policy"


async def test_the_overview_counts_sessions_by_state_and_lists_the_newest_change_first(
    client: httpx.AsyncClient,
) -> None:
    first = await create(client, title="First of two")
    second = await create(client, title="Second of two")
    await act(client, first["id"], "start")
    await act(client, second["id"], "cancel")

    counters = (await client.get("/", params={"fragment": "counters"})).text
    assert _counter(counters, "RUNNING") == 1
    assert _counter(counters, "PENDING") == 0
    # The operator ended it: counted apart, not as a failure.
    assert _counter(counters, "FAILED") == 0
    assert _counter(counters, "STOPPED") == 1
    assert _counter(counters, "COMPLETED") == 0
    # Each counter opens the list of the states it adds up.
    assert 'href="/sessions?status=RUNNING&amp;status=DEGRADED" data-counter="RUNNING"' in counters
    assert _link(counters, "FAILED") == "/sessions?status=FAILED&amp;status=TIMEOUT"
    assert _link(counters, "STOPPED") == "/sessions?status=STOPPED&amp;status=CANCELLED"

    activity = (await client.get("/", params={"fragment": "activity"})).text
    rows = re.findall(r"<tr>\s*<td class=\"mono\">.*?</tr>", activity, re.S)
    assert len(rows) == 4  # two creations, two transitions
    assert "Second of two" in rows[0]
    assert "CANCELLED" in rows[0]
    assert "First of two" in rows[1]
    assert "RUNNING" in rows[1]
    assert "created" in rows[3]
    assert "First of two" in rows[3]


async def test_the_session_list_filters_by_several_states_and_searches(
    client: httpx.AsyncClient,
) -> None:
    running = await create(client, title="alpha running")
    await act(client, running["id"], "start")
    cancelled = await create(client, title="alpha cancelled")
    await act(client, cancelled["id"], "cancel")
    await create(client, title="beta pending")

    both = await client.get(
        "/sessions", params=[("status", "RUNNING"), ("status", "CANCELLED"), ("fragment", "list")]
    )
    shown = re.findall(r'data-session="([0-9a-f-]+)"', both.text)
    assert sorted(shown) == sorted([running["id"], cancelled["id"]])

    searched = await client.get("/sessions", params={"q": "beta", "fragment": "list"})
    assert re.findall(r'data-session="[0-9a-f-]+" data-status="(\w+)"', searched.text) == [
        "PENDING"
    ]
    # A state that does not exist is no filter at all, not an error page.
    loose = await client.get("/sessions", params={"status": "SLEEPING", "fragment": "list"})
    assert len(re.findall(r'data-session="', loose.text)) == 3


async def test_unknown_things_get_a_404_page_not_a_stack_trace(client: httpx.AsyncClient) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for path in [f"/sessions/{missing}", "/sessions/not-a-uuid", f"/tasks/{missing}", "/tasks/x"]:
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "NOT FOUND" in response.text
    session = await create(client)
    region = await client.get(f"/sessions/{session['id']}", params={"fragment": "nope"})
    assert region.status_code == 404
    assert "no region 'nope'" in region.text


async def test_the_session_header_enables_the_verbs_of_its_state(
    client: httpx.AsyncClient,
) -> None:
    session = await create(client)
    await act(client, session["id"], "start")
    header = (await client.get(f"/sessions/{session['id']}", params={"fragment": "header"})).text
    enabled = re.findall(r'data-verb="(\w+)">', header)
    disabled = re.findall(r'data-verb="(\w+)" disabled>', header)
    assert enabled == ["pause", "stop"]
    assert disabled == ["start", "resume", "retry", "cancel"]
    assert 'data-status="RUNNING"' in header


async def test_the_state_colours_come_from_the_state_table(client: httpx.AsyncClient) -> None:
    css = (await client.get("/dashboard/states.css")).text
    for state, info in STATE_TABLE.items():
        assert f".state-{state.value}{{--state:{info.color}}}" in css
    script = await client.get("/static/dashboard.js")
    assert script.status_code == 200


async def test_the_duration_counts_running_time_and_ticks_only_while_running(
    client: httpx.AsyncClient,
) -> None:
    session = await create(client, timeout_seconds=7200)
    page = f"/sessions/{session['id']}"
    await act(client, session["id"], "start")
    running = (await client.get(page, params={"fragment": "telemetry"})).text
    assert "data-ticking=" in running
    assert "limit 2h 00m 00s" in running
    await act(client, session["id"], "pause")
    paused = (await client.get(page, params={"fragment": "telemetry"})).text
    assert "data-ticking=" not in paused
    # Work spread over tasks: the leaves count, a task split into subtasks does not.
    root = (
        await client.post(
            "/api/v1/tasks",
            json={"title": "Build the service", "session_id": session["id"]},
        )
    ).json()
    decomposed = await client.post(
        f"/api/v1/tasks/{root['id']}/decompose", json={"template": "crud"}
    )
    subtasks = decomposed.json()["subtasks"]
    telemetry = (await client.get(page, params={"fragment": "telemetry"})).text
    assert f"0 of 0 finished tasks · {len(subtasks)} planned" in telemetry


@pytest.mark.settings(**NO_MODEL)
async def test_every_page_shows_a_banner_when_no_model_is_configured(
    client: httpx.AsyncClient,
) -> None:
    for path in ["/", "/sessions", "/agents", "/tasks"]:
        html = (await client.get(path)).text
        banner = re.search(r'<div id="no-model"[^>]*>(.*?)</div>', html, re.S)
        assert banner, (path, html[:2000])
        text = " ".join(banner.group(1).split())
        assert "NO MODEL CONFIGURED" in text
        assert "OPENCODE_MODEL=provider/model" in text
        assert "docs/opencode.md" in text


@pytest.mark.settings(**{**NO_MODEL, "opencode_model": "scripted/coder"})
async def test_no_banner_once_a_model_is_configured(client: httpx.AsyncClient) -> None:
    assert 'id="no-model"' not in (await client.get("/")).text


async def test_no_banner_where_no_internal_agent_runs(client: httpx.AsyncClient) -> None:
    assert 'id="no-model"' not in (await client.get("/")).text
