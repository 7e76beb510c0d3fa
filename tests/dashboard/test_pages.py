"""The pages as HTML, on both backends: what the server renders for the browser, its
regions (``?fragment=``) and its refusals."""

from __future__ import annotations

import re

import httpx
import pytest

from industrial_orchestrator.dashboard.rendering import CONTENT_SECURITY_POLICY
from industrial_orchestrator.domain.session_states import STATE_TABLE
from tests.api.helpers import act, create

pytestmark = pytest.mark.usefixtures("backend")


def _counter(html: str, name: str) -> int:
    match = re.search(
        rf'data-counter="{name}">.*?<span class="counter-value">(\d+)</span>', html, re.S
    )
    assert match, f"no {name} counter in:\n{html}"
    return int(match.group(1))


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
    assert _counter(counters, "FAILED") == 1  # CANCELLED is in the failure category
    assert _counter(counters, "COMPLETED") == 0
    # Each counter opens the list of the states it adds up.
    assert 'href="/sessions?status=RUNNING&amp;status=DEGRADED" data-counter="RUNNING"' in counters
    assert "status=CANCELLED" in re.search(r'href="([^"]+)" data-counter="FAILED"', counters)[1]

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
