"""The agent fleet and task decomposition pages ("coming soon" in the guide) on real
data made through the API, and every page's console kept clean."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
from playwright.sync_api import Page, expect

from tests.server_process import ServerProcess

from .conftest import screenshot


def _agent(api: httpx.Client, name: str, capabilities: list[str], **fields: Any) -> dict[str, Any]:
    response = api.post(
        "/agents",
        json={"name": name, "agent_type": "implementer", "capabilities": capabilities, **fields},
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def _planned_session(api: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """A session and its root task, decomposed by the microservice template."""
    session = api.post(
        "/sessions",
        json={"title": f"Auth service {uuid4().hex[:6]}", "initial_prompt": "Build it"},
    ).json()
    root = api.post(
        "/tasks",
        json={
            "title": "Build the auth microservice",
            "description": "A microservice with an API, a database and tests",
            "session_id": session["id"],
        },
    ).json()
    decomposed = api.post(f"/tasks/{root['id']}/decompose", json={"template": "microservice"})
    assert decomposed.status_code == 201, decomposed.text
    return session, root


def _move(api: httpx.Client, task_id: str, *statuses: str) -> None:
    for status in statuses:
        response = api.patch(f"/tasks/{task_id}", json={"status": status})
        assert response.status_code == 200, response.text


def test_the_fleet_shows_load_tier_capabilities_and_filters_live(
    page: Page, server: ServerProcess, api: httpx.Client
) -> None:
    tag = uuid4().hex[:6]
    coder = _agent(api, f"coder-{tag}", ["code_generation", "python"], max_concurrent_tasks=4)
    auditor = _agent(api, f"auditor-{tag}", ["security_audit"])
    beat = api.post(
        f"/agents/{coder['id']}/heartbeat", json={"current_load": 0.75, "tasks_in_progress": 3}
    )
    assert beat.status_code == 200, beat.text

    page.goto(server.base_url + "/agents")
    row = page.locator(f'[data-agent="coder-{tag}"]')
    expect(row).to_contain_text("75%")
    expect(row).to_contain_text("3 / 4")
    expect(row).to_contain_text(beat.json()["tier"])
    expect(row).to_contain_text("code_generation")
    expect(row).to_contain_text("healthy")
    fill = row.locator(".gauge-fill")
    assert float(fill.get_attribute("width") or "nan") == 75.0
    screenshot(page, "agents")

    page.select_option("#a-capability", "security_audit")  # submits by itself
    expect(page).to_have_url(f"{server.base_url}/agents?capability=security_audit&tier=&status=")
    expect(page.locator(f'[data-agent="auditor-{tag}"]')).to_be_visible()
    expect(page.locator(f'[data-agent="coder-{tag}"]')).to_have_count(0)

    # Live: an agent registered through the API appears without a reload.
    page.evaluate("window.__notReloaded = true")
    _agent(api, f"auditor-2-{tag}", ["security_audit", "testing"])
    expect(page.locator(f'[data-agent="auditor-2-{tag}"]')).to_be_visible()
    assert page.evaluate("window.__notReloaded === true")

    gone = api.delete(f"/agents/{auditor['id']}")
    assert gone.status_code == 204, gone.text
    expect(page.locator(f'[data-agent="auditor-{tag}"]')).to_have_count(0)


def test_the_task_graph_draws_the_plan_with_its_critical_path_and_blocked_tasks(
    page: Page, server: ServerProcess, api: httpx.Client
) -> None:
    session, root = _planned_session(api)
    graph = api.get(f"/tasks/{root['id']}/dependencies").json()
    first = graph["order"][0]
    _move(api, first, "READY", "RUNNING", "COMPLETED")
    graph = api.get(f"/tasks/{root['id']}/dependencies").json()
    titles = {node["id"]: node["title"] for node in graph["nodes"]}

    page.goto(f"{server.base_url}/tasks?session={session['id']}")
    svg = page.locator("#task-graph")
    nodes = svg.locator("[data-node]")
    expect(nodes).to_have_count(len(graph["nodes"]))

    def ids(selector: str) -> set[str]:
        found: list[str] = svg.locator(selector).evaluate_all(
            "nodes => nodes.map(n => n.dataset.node)"
        )
        return set(found)

    assert ids(".node-critical") == set(graph["critical_path"]["tasks"])
    blocked = {entry["task_id"] for entry in graph["blocked"]}
    assert blocked, "the plan should have tasks waiting on others"
    assert ids(".node-blocked") == blocked
    assert ids(".tnode-COMPLETED") == {first}
    edges = svg.locator("path.edge")
    expect(edges).to_have_count(len(graph["edges"]))
    expect(svg.locator("path.edge-critical")).to_have_count(
        len(graph["critical_path"]["tasks"]) - 1
    )
    # The tree says what blocks each blocked task, by name.
    some = graph["blocked"][0]
    branch = page.locator(f'[data-tree-task="{some["task_id"]}"] > .blocked-by')
    for waiting_for in some["waiting_for"]:
        expect(branch).to_contain_text(titles[waiting_for])
    expect(page.locator("#task-tree [data-tree-task]")).to_have_count(len(graph["nodes"]) + 1)
    screenshot(page, "tasks")

    # Live: the next task moving on is drawn without a reload.
    following = next(task for task in graph["ready"])
    _move(api, following, "READY", "RUNNING")
    expect(svg.locator(f'[data-node="{following}"]')).to_have_class(
        "node tnode-RUNNING node-critical"
        if following in graph["critical_path"]["tasks"]
        else "node tnode-RUNNING"
    )

    # One task's own page: its details, its place in the plan highlighted.
    page.goto(f"{server.base_url}/tasks/{following}")
    expect(page.locator(".page-title")).to_contain_text(titles[following])
    expect(svg.locator(f'[data-node="{following}"]')).to_have_class(
        "node tnode-RUNNING node-critical node-focus"
        if following in graph["critical_path"]["tasks"]
        else "node tnode-RUNNING node-focus"
    )
    screenshot(page, "task")


def test_every_page_renders_without_a_console_error(
    page: Page, server: ServerProcess, api: httpx.Client
) -> None:
    session, root = _planned_session(api)
    paths = [
        "/",
        "/sessions",
        f"/sessions/{session['id']}",
        "/agents",
        "/tasks",
        f"/tasks?session={session['id']}",
        f"/tasks/{root['id']}",
        "/webhooks",
    ]
    for path in paths:
        response = page.goto(server.base_url + path)
        assert response is not None, path
        assert response.status == 200, path
        expect(page.locator("#link-state")).to_have_attribute("data-state", "up")
        expect(page.locator("#uplink")).to_be_hidden()
    # The page fixture fails the test if any of them logged an error.
