"""Tasks over HTTP: creation, listing, decomposition with the templates, the dependency
graph (order, critical path, ready/blocked), new edges, status changes, events and races."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import httpx
import pytest

from .helpers import API, create

TASKS = f"{API}/tasks"
FINISHED = {"COMPLETED", "SKIPPED"}
WAITING = {"PENDING", "READY"}


# --- helpers -------------------------------------------------------------------------------


async def new_task(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"title": "Implement the invoice export", **fields}
    body = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in body.items()}
    response = await client.post(TASKS, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def get_task(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"{TASKS}/{task_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def patch(
    client: httpx.AsyncClient, task_id: str, status: str, expect: int = 200, **body: Any
) -> dict[str, Any]:
    response = await client.patch(f"{TASKS}/{task_id}", json={"status": status, **body})
    assert response.status_code == expect, response.text
    data: dict[str, Any] = response.json()
    return data


async def walk(client: httpx.AsyncClient, task_id: str, *statuses: str) -> dict[str, Any]:
    task: dict[str, Any] = {}
    for status in statuses:
        task = await patch(client, task_id, status)
    return task


async def finish(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    return await walk(client, task_id, "READY", "RUNNING", "COMPLETED")


async def decompose(
    client: httpx.AsyncClient, task_id: str, expect: int = 201, **body: Any
) -> dict[str, Any]:
    response = await client.post(f"{TASKS}/{task_id}/decompose", json=body or None)
    assert response.status_code == expect, response.text
    data: dict[str, Any] = response.json()
    return data


async def add_dependency(
    client: httpx.AsyncClient, task_id: str, depends_on: str, expect: int = 200
) -> dict[str, Any]:
    response = await client.post(f"{TASKS}/{task_id}/dependencies", json={"depends_on": depends_on})
    assert response.status_code == expect, response.text
    data: dict[str, Any] = response.json()
    return data


async def graph_of(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"{TASKS}/{task_id}/dependencies")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def listing(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get(TASKS, params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def tree_of(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"{TASKS}/{task_id}/tree")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def session_events(client: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/sessions/{session_id}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def same(task: dict[str, Any]) -> dict[str, Any]:
    """A task with its dependencies as a set: answers list them in the order they were
    declared, reads in the order they are stored (see the ordering test at the end)."""
    return {**task, "depends_on": sorted(task["depends_on"])}


def parents_in(tree: dict[str, Any]) -> dict[str, str | None]:
    """Every task of a tree -> its parent id."""
    found = {tree["task"]["id"]: tree["task"]["parent_id"]}
    for child in tree["children"]:
        found.update(parents_in(child))
    return found


def check_graph(
    graph: dict[str, Any], summaries: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """Check a dependency graph answer against its own nodes and edges, computed here
    independently; ``summaries`` are tasks with children in the graph (they weigh 0)."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert len(nodes) == len(graph["nodes"])
    deps: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in graph["edges"]:
        assert edge["task_id"] in nodes
        assert edge["depends_on"] in nodes
        deps[edge["task_id"]].append(edge["depends_on"])
    # A topological order of every node.
    order = graph["order"]
    assert sorted(order) == sorted(nodes)
    position = {task_id: i for i, task_id in enumerate(order)}
    for task_id, wanted in deps.items():
        for dep in wanted:
            assert position[dep] < position[task_id], (dep, task_id)
    # The critical path: a chain of edges whose weight is the longest of all chains.
    weight = {n: 0.0 if n in summaries else nodes[n]["estimated_effort"] for n in nodes}
    longest: dict[str, float] = {}
    for task_id in order:
        longest[task_id] = weight[task_id] + max((longest[d] for d in deps[task_id]), default=0)
    critical = graph["critical_path"]
    path = critical["tasks"]
    assert path, "a non-empty graph has a critical path"
    for before, after in itertools.pairwise(path):
        assert before in deps[after], f"{after} does not depend on {before}"
    assert critical["total_effort"] == pytest.approx(sum(weight[t] for t in path))
    assert critical["total_effort"] == pytest.approx(max(longest.values()))
    # Ready: waiting tasks with every dependency finished; blocked: the others, and why.
    status = {n: nodes[n]["status"] for n in nodes}
    expected_ready = [
        n for n in nodes if status[n] in WAITING and all(status[d] in FINISHED for d in deps[n])
    ]
    assert graph["ready"] == expected_ready
    expected_blocked = {
        n: sorted(d for d in deps[n] if status[d] not in FINISHED)
        for n in nodes
        if status[n] in WAITING and any(status[d] not in FINISHED for d in deps[n])
    }
    got_blocked = {b["task_id"]: sorted(b["waiting_for"]) for b in graph["blocked"]}
    assert got_blocked == expected_blocked
    return {"deps": deps, "position": position, "weight": weight, "longest": longest}


def by_key(subtasks: list[dict[str, Any]], keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Subtasks named by a key: the one whose title starts with the given prefix."""
    named: dict[str, dict[str, Any]] = {}
    for key, prefix in keys.items():
        matching = [t for t in subtasks if t["title"].startswith(prefix)]
        assert len(matching) == 1, (prefix, [t["title"] for t in subtasks])
        named[key] = matching[0]
    return named


# --- creation, reading, listing ------------------------------------------------------------


async def test_create_normalises_and_reads_back(client):
    session = await create(client)
    task = await new_task(
        client,
        title="  Export invoices as CSV  ",
        description="Monthly export for accounting",
        task_type="code_generation",
        required_capabilities=[" Python", "python", "SQL"],
        estimated_effort=2.5,
        session_id=session["id"],
    )
    assert task["title"] == "Export invoices as CSV"
    assert task["required_capabilities"] == ["python", "sql"]
    assert task["status"] == "PENDING"
    assert task["version"] == 1
    assert task["estimated_effort"] == 2.5
    assert task["session_id"] == session["id"]
    assert task["parent_id"] is None
    assert task["depends_on"] == []
    assert task["template"] is None
    assert task["started_at"] is None
    assert task["finished_at"] is None
    assert task["result_summary"] is None
    assert await get_task(client, task["id"]) == task


async def test_create_defaults(client):
    task = await new_task(client)
    assert task["task_type"] == "code_generation"
    assert task["estimated_effort"] == 1.0
    assert task["required_capabilities"] == []
    assert task["session_id"] is None


async def test_subtask_inherits_its_parents_session(client):
    session = await create(client)
    parent = await new_task(client, session_id=session["id"])
    child = await new_task(client, parent_id=parent["id"])
    assert child["session_id"] == session["id"]
    assert child["parent_id"] == parent["id"]
    other = await create(client)
    response = await client.post(
        TASKS, json={"title": "x", "parent_id": parent["id"], "session_id": other["id"]}
    )
    assert response.status_code == 422
    assert response.json()["details"]["field"] == "parent_id"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "   "}, "title"),
        ({"title": ""}, "title"),
        ({}, "title"),
        ({"title": "t", "estimated_effort": 0}, "estimated_effort"),
        ({"title": "t", "estimated_effort": -1.5}, "estimated_effort"),
        ({"title": "t", "task_type": "cooking"}, "task_type"),
        ({"title": "t", "colour": "blue"}, "colour"),
        ({"title": "t", "required_capabilities": ["python", "  "]}, "required_capabilities.1"),
        ({"title": "t", "session_id": "not-a-uuid"}, "session_id"),
    ],
)
async def test_create_schema_errors(client, body, field):
    response = await client.post(TASKS, json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert field in [problem["field"] for problem in error["details"]]


async def test_create_with_unknown_references(client):
    missing = str(uuid.uuid4())
    for field, value in (
        ("session_id", missing),
        ("depends_on", [missing]),
        ("parent_id", missing),
    ):
        response = await client.post(TASKS, json={"title": "t", field: value})
        assert response.status_code == 422, response.text
        error = response.json()
        assert error["error"] == "invalid_input"
        assert error["details"]["field"] == field
    assert (await listing(client))["total"] == 0


async def test_dependencies_stay_in_one_session(client):
    first, second = await create(client), await create(client)
    there = await new_task(client, session_id=second["id"])
    response = await client.post(
        TASKS, json={"title": "t", "session_id": first["id"], "depends_on": [there["id"]]}
    )
    assert response.status_code == 422
    assert response.json()["details"] == {"field": "depends_on", "depends_on": there["id"]}
    # Nor from a session-less task to a session's task, nor between two unrelated roots.
    loose = await client.post(TASKS, json={"title": "t", "depends_on": [there["id"]]})
    assert loose.status_code == 422
    root = await new_task(client)
    other_root = await client.post(TASKS, json={"title": "t", "depends_on": [root["id"]]})
    assert other_root.status_code == 422
    # Within a session it works, duplicates dropped.
    here = await new_task(client, session_id=first["id"])
    after = await new_task(client, session_id=first["id"], depends_on=[here["id"], here["id"]])
    assert after["depends_on"] == [here["id"]]
    # Outside sessions, within one tree.
    child = await new_task(client, parent_id=root["id"])
    sibling = await new_task(client, parent_id=root["id"], depends_on=[child["id"]])
    assert sibling["depends_on"] == [child["id"]]


async def test_get_unknown_task(client):
    response = await client.get(f"{TASKS}/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert (await client.get(f"{TASKS}/nope")).status_code == 422
    for path in ("dependencies", "tree"):
        assert (await client.get(f"{TASKS}/{uuid.uuid4()}/{path}")).status_code == 404
    assert (await client.post(f"{TASKS}/{uuid.uuid4()}/decompose")).status_code == 404
    gone = await client.patch(f"{TASKS}/{uuid.uuid4()}", json={"status": "READY"})
    assert gone.status_code == 404


async def test_list_filters_and_pages(client):
    first, second = await create(client), await create(client)
    ids = [(await new_task(client, title=f"a{i}", session_id=first["id"]))["id"] for i in range(5)]
    await new_task(client, title="b", session_id=second["id"])
    loose = await new_task(client, title="loose")
    children = [(await new_task(client, title=f"c{i}", parent_id=ids[0]))["id"] for i in range(2)]
    await patch(client, ids[1], "READY")
    await patch(client, ids[2], "CANCELLED")
    await patch(client, ids[3], "SKIPPED")

    everything = await listing(client, page_size=100)
    assert everything["total"] == 9
    assert loose["id"] in [t["id"] for t in everything["items"]]

    in_first = await listing(client, session_id=first["id"])
    assert in_first["total"] == 7  # five tasks and the two subtasks that inherited it
    assert [t["id"] for t in in_first["items"]] == ids + children  # creation order

    page1 = await listing(client, session_id=first["id"], page=1, page_size=3)
    page2 = await listing(client, session_id=first["id"], page=2, page_size=3)
    page3 = await listing(client, session_id=first["id"], page=3, page_size=3)
    page9 = await listing(client, session_id=first["id"], page=9, page_size=3)
    assert (page1["page"], page1["page_size"], page1["total"]) == (1, 3, 7)
    assert [t["id"] for t in page1["items"] + page2["items"] + page3["items"]] == ids + children
    assert page9["items"] == []
    assert page9["total"] == 7

    below = await listing(client, parent_id=ids[0])
    assert [t["id"] for t in below["items"]] == children
    assert below["total"] == 2

    done = await listing(client, status=["CANCELLED", "SKIPPED"])
    assert sorted(t["id"] for t in done["items"]) == sorted([ids[2], ids[3]])
    assert done["total"] == 2
    ready = await listing(client, status="READY", session_id=first["id"])
    assert [t["id"] for t in ready["items"]] == [ids[1]]
    none = await listing(client, status="READY", session_id=second["id"])
    assert none == {"items": [], "total": 0, "page": 1, "page_size": 20}

    for params in ({"status": "DONE"}, {"page": 0}, {"page_size": 0}, {"parent_id": "x"}):
        assert (await client.get(TASKS, params=params)).status_code == 422


# --- decomposition -------------------------------------------------------------------------

CRUD_PROMPT = "Build a CRUD API for customer invoices with PostgreSQL"

# template -> (prompt, task type, keywords that must match, subtask title prefixes by key,
# engineering order: each (before, after) must hold in the dependency order)
CASES: dict[str, tuple[str, str, set[str], dict[str, str], list[tuple[str, str]]]] = {
    "crud": (
        CRUD_PROMPT,
        "code_generation",
        {"crud", "postgresql"},
        {
            "schema": "Design the database schema for customer invoices",
            "model": "Implement the customer invoices data model",
            "repository": "Implement the customer invoices repository",
            "endpoints": "Expose the CRUD endpoints",
            "security": "Review the security",
            "tests": "Test the customer invoices",
            "docs": "Document",
        },
        [
            ("schema", "model"),
            ("model", "repository"),
            ("repository", "endpoints"),
            ("schema", "endpoints"),
            ("endpoints", "tests"),
            ("endpoints", "security"),
            ("tests", "docs"),
            ("security", "docs"),
        ],
    ),
    "microservice": (
        "Create a payments microservice with its own database and a REST API",
        "code_generation",
        {"microservice"},
        {
            "contract": "Design the API contract for the payments service",
            "skeleton": "Scaffold",
            "data": "Build the data layer",
            "logic": "Implement the payments business logic",
            "endpoints": "Expose the payments API endpoints",
            "unit": "Write unit tests",
            "integration": "Write integration tests",
            "deploy": "Containerise and deploy",
            "review": "Review the payments service",
        },
        [
            ("contract", "skeleton"),
            ("skeleton", "data"),
            ("data", "logic"),
            ("logic", "endpoints"),
            ("contract", "endpoints"),
            ("logic", "unit"),
            ("endpoints", "integration"),
            ("unit", "deploy"),
            ("integration", "deploy"),
            ("deploy", "review"),
        ],
    ),
    "security": (
        "Audit the login flow for OWASP issues",
        "security_audit",
        {"audit", "owasp"},
        {
            "threat": "Threat-model login flow",
            "deps": "Audit the dependencies",
            "static": "Run static analysis",
            "auth": "Review authentication",
            "input": "Review input validation",
            "fix": "Fix the security findings",
            "verify": "Write security regression tests",
            "report": "Write the security report",
        },
        [
            ("threat", "deps"),
            ("threat", "static"),
            ("threat", "auth"),
            ("threat", "input"),
            ("deps", "fix"),
            ("static", "fix"),
            ("auth", "fix"),
            ("input", "fix"),
            ("fix", "verify"),
            ("verify", "report"),
        ],
    ),
    "ui": (
        "Build a React dashboard page for orders",
        "code_generation",
        {"react", "dashboard"},
        {
            "ux": "Design the user experience for orders",
            "components": "Build the UI components",
            "pages": "Build the pages",
            "integration": "Connect the orders UI",
            "a11y": "Review the accessibility",
            "tests": "Write UI tests",
        },
        [
            ("ux", "components"),
            ("components", "pages"),
            ("pages", "integration"),
            ("integration", "a11y"),
            ("a11y", "tests"),
        ],
    ),
    "generic": (
        "Make the thing better",
        "code_generation",
        set(),
        {
            "design": "Design the approach",
            "implement": "Implement",
            "test": "Test",
            "review": "Review",
        },
        [("design", "implement"), ("implement", "test"), ("test", "review")],
    ),
}


@pytest.mark.parametrize("template", list(CASES))
async def test_decompose_chooses_the_template_and_stores_the_plan(client, template):
    prompt, task_type, keywords, titles, order = CASES[template]
    session = await create(client)
    task = await new_task(
        client,
        title=prompt,
        description=prompt,
        task_type=task_type,
        session_id=session["id"],
        estimated_effort=8,
    )
    result = await decompose(client, task["id"])

    choice = result["choice"]
    assert choice["template"] == template
    assert choice["explicit"] is False
    if template == "generic":
        assert choice["score"] == 0
        assert choice["matched"] == []
    else:
        assert 0 < choice["score"] < 1
        assert keywords <= set(choice["matched"])

    subtasks = result["subtasks"]
    named = by_key(subtasks, titles)
    assert len(subtasks) == len(titles)
    for subtask in subtasks:
        assert subtask["parent_id"] == task["id"]
        assert subtask["session_id"] == session["id"]
        assert subtask["template"] == template
        assert subtask["status"] == "PENDING"
        assert subtask["version"] == 1
        assert subtask["required_capabilities"], subtask["title"]
        assert subtask["estimated_effort"] > 0
        assert prompt in subtask["description"]

    # Stored as answered, in the plan's order.
    stored = await listing(client, parent_id=task["id"], page_size=100)
    assert stored["total"] == len(subtasks)
    assert [same(t) for t in stored["items"]] == [same(t) for t in subtasks]

    # The task now waits for its direct subtasks.
    assert sorted(result["task"]["depends_on"]) == sorted(t["id"] for t in subtasks)
    assert same(await get_task(client, task["id"])) == same(result["task"])
    assert result["task"]["status"] == "PENDING"

    # The engineering order holds in the graph of the plan.
    graph = await graph_of(client, task["id"])
    assert sorted(n["id"] for n in graph["nodes"]) == sorted(t["id"] for t in subtasks)
    facts = check_graph(graph)
    position = facts["position"]
    for before, after in order:
        assert position[named[before]["id"]] < position[named[after]["id"]], (before, after)
    first = order[0][0]
    assert graph["ready"] == [named[first]["id"]]
    assert graph["order"][0] == named[first]["id"]

    if template == "generic":
        # Shaped by the task: its effort shared, its text the subject.
        assert sum(t["estimated_effort"] for t in subtasks) == pytest.approx(8)
        assert named["implement"]["required_capabilities"] == ["code_generation"]
        assert "thing better" in named["implement"]["title"]


async def test_decompose_generic_keeps_the_tasks_capabilities_and_type(client):
    task = await new_task(
        client,
        title="Tidy the onboarding flow",
        required_capabilities=["Python"],
        estimated_effort=4,
    )
    result = await decompose(client, task["id"])
    assert result["choice"]["template"] == "generic"
    implement = by_key(result["subtasks"], {"i": "Implement"})["i"]
    assert implement["required_capabilities"] == ["code_generation", "python"]
    # A documentation task is not a CRUD API to build, whatever its words.
    docs = await new_task(
        client, title="Document the CRUD API endpoints", task_type="documentation"
    )
    planned = await decompose(client, docs["id"])
    assert planned["choice"]["template"] == "generic"
    types = [t["task_type"] for t in planned["subtasks"]]
    assert types == ["research", "documentation", "review"]


async def test_decompose_with_a_named_template(client):
    task = await new_task(client, title="Make the thing better")
    result = await decompose(client, task["id"], template=" CRUD ")
    assert result["choice"] == {"template": "crud", "score": 0.0, "matched": [], "explicit": True}
    assert {t["template"] for t in result["subtasks"]} == {"crud"}
    assert len(result["subtasks"]) == 7
    # Named, a template matching the text keeps its score.
    audit = await new_task(client, title="Audit the login flow for OWASP issues")
    named = await decompose(client, audit["id"], template="security")
    assert named["choice"]["explicit"] is True
    assert named["choice"]["score"] > 0
    assert "owasp" in named["choice"]["matched"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"template": "kanban"}, "invalid_input"),
        ({"max_depth": 0}, "validation_error"),
        ({"max_depth": 4}, "validation_error"),
        ({"max_depth": "deep"}, "validation_error"),
        ({"depth": 2}, "validation_error"),
    ],
)
async def test_decompose_refuses_bad_requests(client, body, code):
    task = await new_task(client, title=CRUD_PROMPT)
    response = await client.post(f"{TASKS}/{task['id']}/decompose", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    if code == "invalid_input":
        assert "crud" in response.json()["details"]["known"]
    # Nothing was stored.
    assert (await listing(client, parent_id=task["id"]))["total"] == 0
    assert (await get_task(client, task["id"]))["depends_on"] == []


async def test_decompose_once_and_only_before_the_task_starts(client):
    task = await new_task(client, title=CRUD_PROMPT)
    await decompose(client, task["id"])
    again = await client.post(f"{TASKS}/{task['id']}/decompose")
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"
    assert (await listing(client, parent_id=task["id"]))["total"] == 7

    running = await walk(client, (await new_task(client))["id"], "READY", "RUNNING")
    refused = await client.post(f"{TASKS}/{running['id']}/decompose")
    assert refused.status_code == 409
    assert refused.json()["details"]["current_state"] == "RUNNING"


async def test_decomposing_a_ready_task_makes_it_wait_again(client):
    task = await patch(client, (await new_task(client, title=CRUD_PROMPT))["id"], "READY")
    result = await decompose(client, task["id"])
    assert result["task"]["status"] == "PENDING"
    assert result["task"]["version"] == 3
    blocked = await client.patch(f"{TASKS}/{task['id']}", json={"status": "READY"})
    assert blocked.status_code == 409
    assert sorted(blocked.json()["details"]["blocked_by"]) == sorted(
        t["id"] for t in result["subtasks"]
    )


async def test_subtasks_wait_for_what_the_task_waited_for(client):
    session = await create(client)
    before = await new_task(client, title="Agree on the invoice format", session_id=session["id"])
    task = await new_task(
        client, title=CRUD_PROMPT, session_id=session["id"], depends_on=[before["id"]]
    )
    result = await decompose(client, task["id"])
    schema = by_key(result["subtasks"], {"s": "Design the database schema"})["s"]
    assert schema["depends_on"] == [before["id"]]
    assert before["id"] in result["task"]["depends_on"]
    graph = await graph_of(client, task["id"])
    check_graph(graph)
    # The outside dependency is not part of the plan's graph, but the schema task waits.
    assert before["id"] not in [n["id"] for n in graph["nodes"]]
    refused = await client.patch(f"{TASKS}/{schema['id']}", json={"status": "READY"})
    assert refused.json()["details"]["blocked_by"] == [before["id"]]
    await finish(client, before["id"])
    assert (await patch(client, schema["id"], "READY"))["status"] == "READY"


async def test_deeper_plans_nest_and_subtasks_decompose_later(client):
    session = await create(client)
    task = await new_task(
        client,
        title="Create a payments microservice with its own database and a REST API",
        session_id=session["id"],
    )
    result = await decompose(client, task["id"], max_depth=2)
    subtasks = result["subtasks"]
    direct = [t for t in subtasks if t["parent_id"] == task["id"]]
    assert sorted(result["task"]["depends_on"]) == sorted(t["id"] for t in direct)
    logic = by_key(direct, {"logic": "Implement the payments business logic"})["logic"]
    nested = [t for t in subtasks if t["parent_id"] == logic["id"]]
    assert len(nested) == 4
    # The summary task waits for its children; its first child for what it waited for.
    assert {t["id"] for t in nested} <= set(logic["depends_on"])
    assert sum(t["estimated_effort"] for t in nested) == pytest.approx(logic["estimated_effort"])
    data = by_key(direct, {"data": "Build the data layer"})["data"]
    first_nested = by_key(nested, {"d": "Design"})["d"]
    assert first_nested["depends_on"] == [data["id"]]

    tree = await tree_of(client, task["id"])
    assert tree["task"]["id"] == task["id"]
    assert sorted(c["task"]["id"] for c in tree["children"]) == sorted(t["id"] for t in direct)
    logic_node = next(c for c in tree["children"] if c["task"]["id"] == logic["id"])
    assert sorted(c["task"]["id"] for c in logic_node["children"]) == sorted(
        t["id"] for t in nested
    )
    stored = await listing(client, parent_id=logic["id"])
    assert sorted(t["id"] for t in stored["items"]) == sorted(t["id"] for t in nested)

    graph = await graph_of(client, task["id"])
    parents = parents_in(tree)
    summaries = {p for p in parents.values() if p is not None}
    facts = check_graph(graph, summaries)
    # Efforts are counted once: the summary weighs nothing, its children carry it.
    path = graph["critical_path"]["tasks"]
    assert logic["id"] in path
    assert all(t["id"] in path for t in nested)
    assert graph["critical_path"]["total_effort"] == pytest.approx(28.5)
    assert facts["weight"][logic["id"]] == 0

    # A leaf of the plan can be planned later, below the first plan.
    endpoints = by_key(direct, {"e": "Expose the payments API endpoints"})["e"]
    later = await decompose(client, endpoints["id"])
    assert all(t["parent_id"] == endpoints["id"] for t in later["subtasks"])
    assert sorted(later["task"]["depends_on"]) == sorted(
        endpoints["depends_on"] + [t["id"] for t in later["subtasks"]]
    )
    tree = await tree_of(client, task["id"])
    endpoints_node = next(c for c in tree["children"] if c["task"]["id"] == endpoints["id"])
    assert len(endpoints_node["children"]) == len(later["subtasks"])
    parents = parents_in(tree)
    graph = await graph_of(client, task["id"])
    assert len(graph["nodes"]) == len(subtasks) + len(later["subtasks"])
    check_graph(graph, {p for p in parents.values() if p is not None})
    sub_graph = await graph_of(client, endpoints["id"])
    assert sorted(n["id"] for n in sub_graph["nodes"]) == sorted(t["id"] for t in later["subtasks"])
    check_graph(sub_graph)


# --- the dependency graph ------------------------------------------------------------------


async def test_graph_follows_progress(client):
    task = await new_task(client, title=CRUD_PROMPT)
    result = await decompose(client, task["id"])
    named = by_key(result["subtasks"], CASES["crud"][3])
    graph = await graph_of(client, task["id"])
    check_graph(graph)
    # schema 1.5 + model 2 + repository 3 + endpoints 5 + tests 3 + docs 1
    assert graph["critical_path"]["total_effort"] == pytest.approx(15.5)
    assert graph["critical_path"]["tasks"] == [
        named[k]["id"] for k in ("schema", "model", "repository", "endpoints", "tests", "docs")
    ]
    blocked = {b["task_id"]: b["waiting_for"] for b in graph["blocked"]}
    assert sorted(blocked[named["docs"]["id"]]) == sorted(
        [named["tests"]["id"], named["security"]["id"]]
    )

    for key in ("schema", "model", "repository"):
        await finish(client, named[key]["id"])
    await walk(client, named["endpoints"]["id"], "READY", "RUNNING")
    graph = await graph_of(client, task["id"])
    check_graph(graph)
    assert graph["ready"] == []  # endpoints runs, the rest waits for it
    blocked = {b["task_id"]: b["waiting_for"] for b in graph["blocked"]}
    assert blocked[named["tests"]["id"]] == [named["endpoints"]["id"]]
    assert named["endpoints"]["id"] not in blocked

    await patch(client, named["endpoints"]["id"], "COMPLETED")
    await walk(client, named["security"]["id"], "SKIPPED")
    graph = await graph_of(client, task["id"])
    check_graph(graph)
    assert graph["ready"] == [named["tests"]["id"]]
    assert {b["task_id"]: b["waiting_for"] for b in graph["blocked"]} == {
        named["docs"]["id"]: [named["tests"]["id"]]
    }

    # Once every subtask is done, the task itself may start.
    await walk(client, named["tests"]["id"], "READY", "RUNNING", "FAILED")
    graph = await graph_of(client, task["id"])
    check_graph(graph)  # a FAILED dependency still blocks
    assert graph["ready"] == []
    await walk(client, named["tests"]["id"], "READY", "RUNNING", "COMPLETED")
    await finish(client, named["docs"]["id"])
    assert (await patch(client, task["id"], "READY"))["status"] == "READY"


async def test_graph_of_a_task_that_was_not_decomposed(client):
    session = await create(client)
    a = await new_task(client, title="a", estimated_effort=2, session_id=session["id"])
    b = await new_task(client, title="b", estimated_effort=3, session_id=session["id"])
    c = await new_task(
        client,
        title="c",
        estimated_effort=1,
        session_id=session["id"],
        depends_on=[a["id"], b["id"]],
    )
    graph = await graph_of(client, c["id"])
    assert sorted(n["id"] for n in graph["nodes"]) == sorted([a["id"], b["id"], c["id"]])
    check_graph(graph)
    assert graph["critical_path"] == {"tasks": [b["id"], c["id"]], "total_effort": 4.0}
    assert sorted(graph["ready"]) == sorted([a["id"], b["id"]])
    alone = await graph_of(client, a["id"])
    assert [n["id"] for n in alone["nodes"]] == [a["id"]]
    assert alone["edges"] == []
    assert alone["order"] == [a["id"]]
    assert alone["critical_path"] == {"tasks": [a["id"]], "total_effort": 2.0}


async def test_graph_of_a_wide_hand_built_plan(client):
    """A diamond with uneven branches: the critical path takes the heavy one."""
    session = await create(client)
    sid = session["id"]
    start = await new_task(client, title="start", estimated_effort=1, session_id=sid)
    light = await new_task(
        client, title="light", estimated_effort=1, session_id=sid, depends_on=[start["id"]]
    )
    heavy1 = await new_task(
        client, title="heavy1", estimated_effort=3, session_id=sid, depends_on=[start["id"]]
    )
    heavy2 = await new_task(
        client, title="heavy2", estimated_effort=3, session_id=sid, depends_on=[heavy1["id"]]
    )
    end = await new_task(
        client,
        title="end",
        estimated_effort=0.5,
        session_id=sid,
        depends_on=[light["id"], heavy2["id"]],
    )
    graph = await graph_of(client, end["id"])
    # Only the task and its direct dependencies, by the documented rule.
    assert sorted(n["id"] for n in graph["nodes"]) == sorted([end["id"], light["id"], heavy2["id"]])
    check_graph(graph)
    # A task tree over the same chain sees all of it.
    root = await new_task(client, title="root", session_id=sid)
    chain = []
    previous: list[str] = []
    for i, effort in enumerate([1, 4, 2, 2, 5]):
        made = await new_task(
            client,
            title=f"s{i}",
            estimated_effort=effort,
            parent_id=root["id"],
            depends_on=previous,
        )
        chain.append(made["id"])
        previous = [made["id"]] if i != 2 else [chain[0]]
    graph = await graph_of(client, root["id"])
    facts = check_graph(graph)
    # s0 -> s1 -> s2 and s0 -> s3 -> s4: 1+2+5 = 8 beats 1+4+2 = 7
    assert graph["critical_path"]["tasks"] == [chain[0], chain[3], chain[4]]
    assert graph["critical_path"]["total_effort"] == 8.0
    assert max(facts["longest"].values()) == 8.0


# --- adding dependencies -------------------------------------------------------------------


async def test_an_edge_that_closes_a_loop_is_refused_with_the_loop(client):
    session = await create(client)
    sid = session["id"]
    a = await new_task(client, title="a", session_id=sid)
    b = await new_task(client, title="b", session_id=sid, depends_on=[a["id"]])
    c = await new_task(client, title="c", session_id=sid, depends_on=[b["id"]])
    edges = {(b["id"], a["id"]), (c["id"], b["id"])}

    response = await client.post(f"{TASKS}/{a['id']}/dependencies", json={"depends_on": c["id"]})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "dependency_cycle"
    cycle = error["details"]["cycle"]
    assert cycle[0] == cycle[-1] == a["id"]
    assert set(cycle) == {a["id"], b["id"], c["id"]}
    proposed = (a["id"], c["id"])
    for pair in itertools.pairwise(cycle):
        assert pair in edges | {proposed}, pair
    assert proposed in set(itertools.pairwise(cycle))

    itself = await client.post(f"{TASKS}/{a['id']}/dependencies", json={"depends_on": a["id"]})
    assert itself.status_code == 422
    assert itself.json()["details"]["cycle"] == [a["id"], a["id"]]
    # Nothing changed.
    assert (await get_task(client, a["id"]))["depends_on"] == []
    check_graph(await graph_of(client, c["id"]))


async def test_a_subtask_cannot_wait_for_its_plans_owner(client):
    task = await new_task(client, title=CRUD_PROMPT)
    result = await decompose(client, task["id"])
    response = await client.post(
        f"{TASKS}/{result['subtasks'][0]['id']}/dependencies", json={"depends_on": task["id"]}
    )
    assert response.status_code == 422
    cycle = response.json()["details"]["cycle"]
    assert cycle[0] == cycle[-1] == result["subtasks"][0]["id"]
    assert task["id"] in cycle


async def test_add_dependency_and_duplicates(client):
    session = await create(client)
    a = await new_task(client, title="a", session_id=session["id"])
    b = await new_task(client, title="b", session_id=session["id"])
    added = await add_dependency(client, b["id"], a["id"])
    assert added["depends_on"] == [a["id"]]
    assert added["version"] == 2  # a new edge is a change of the task
    assert added["status"] == "PENDING"
    assert await get_task(client, b["id"]) == added
    again = await add_dependency(client, b["id"], a["id"])
    assert again == added
    kinds = [e["type"] for e in await session_events(client, session["id"])]
    assert kinds.count("task.dependency_added") == 1

    other = await new_task(client, session_id=(await create(client))["id"])
    refused = await client.post(f"{TASKS}/{b['id']}/dependencies", json={"depends_on": other["id"]})
    assert refused.status_code == 422
    assert refused.json()["details"]["field"] == "depends_on"
    unknown = await client.post(
        f"{TASKS}/{b['id']}/dependencies", json={"depends_on": str(uuid.uuid4())}
    )
    assert unknown.status_code == 422
    missing = await client.post(
        f"{TASKS}/{uuid.uuid4()}/dependencies", json={"depends_on": a["id"]}
    )
    assert missing.status_code == 404
    bad = await client.post(f"{TASKS}/{b['id']}/dependencies", json={"depends_on": "x"})
    assert bad.status_code == 422
    assert bad.json()["error"] == "validation_error"


async def test_started_tasks_take_no_new_dependencies(client):
    session = await create(client)
    a = await new_task(client, title="a", session_id=session["id"])
    b = await walk(
        client,
        (await new_task(client, title="b", session_id=session["id"]))["id"],
        "READY",
        "RUNNING",
    )
    response = await client.post(f"{TASKS}/{b['id']}/dependencies", json={"depends_on": a["id"]})
    assert response.status_code == 409
    assert response.json()["details"]["current_state"] == "RUNNING"
    assert (await get_task(client, b["id"]))["depends_on"] == []
    done = await patch(client, b["id"], "COMPLETED")
    late = await client.post(f"{TASKS}/{done['id']}/dependencies", json={"depends_on": a["id"]})
    assert late.status_code == 409


async def test_a_ready_task_waits_again_for_an_unfinished_dependency(client):
    session = await create(client)
    sid = session["id"]
    done = await finish(client, (await new_task(client, title="done", session_id=sid))["id"])
    open_ = await new_task(client, title="open", session_id=sid)
    task = await patch(client, (await new_task(client, title="t", session_id=sid))["id"], "READY")
    # A finished dependency changes nothing.
    kept = await add_dependency(client, task["id"], done["id"])
    assert (kept["status"], kept["version"]) == ("READY", 3)
    reopened = await add_dependency(client, task["id"], open_["id"])
    assert (reopened["status"], reopened["version"]) == ("PENDING", 4)
    assert reopened["depends_on"] == sorted([done["id"], open_["id"]])
    assert same(await get_task(client, task["id"])) == same(reopened)
    events = [
        e for e in await session_events(client, sid) if e["payload"].get("task_id") == task["id"]
    ]
    assert [e["type"] for e in events][-2:] == ["task.transition", "task.dependency_added"]
    assert (events[-2]["payload"]["from"], events[-2]["payload"]["to"]) == ("READY", "PENDING")
    refused = await client.patch(f"{TASKS}/{task['id']}", json={"status": "READY"})
    assert refused.status_code == 409
    assert refused.json()["details"]["blocked_by"] == [open_["id"]]


# --- status changes ------------------------------------------------------------------------


async def test_the_happy_path_and_a_retry(client):
    task = await new_task(client)
    ready = await patch(client, task["id"], "READY")
    assert (ready["status"], ready["version"]) == ("READY", 2)
    running = await patch(client, task["id"], "RUNNING", expected_version=2)
    assert (running["status"], running["version"]) == ("RUNNING", 3)
    assert running["started_at"] is not None
    assert running["finished_at"] is None
    done = await patch(client, task["id"], "COMPLETED", result_summary="Export written")
    assert (done["status"], done["version"]) == ("COMPLETED", 4)
    assert done["result_summary"] == "Export written"
    assert done["finished_at"] is not None
    assert done["started_at"] == running["started_at"]
    assert await get_task(client, task["id"]) == done

    other = await walk(client, (await new_task(client))["id"], "READY", "RUNNING")
    failed = await patch(client, other["id"], "FAILED", result_summary="timeout")
    assert failed["finished_at"] is not None
    assert failed["result_summary"] == "timeout"
    retried = await patch(client, other["id"], "READY")
    assert (retried["status"], retried["version"]) == ("READY", 5)
    assert retried["finished_at"] is None
    assert retried["result_summary"] == "timeout"
    again = await walk(client, other["id"], "RUNNING", "COMPLETED")
    assert again["version"] == 7
    assert again["started_at"] == failed["started_at"]


@pytest.mark.parametrize(
    ("path", "target", "allowed"),
    [
        ([], "COMPLETED", ["READY", "SKIPPED", "CANCELLED"]),
        ([], "FAILED", ["READY", "SKIPPED", "CANCELLED"]),
        ([], "PENDING", ["READY", "SKIPPED", "CANCELLED"]),
        (["READY"], "FAILED", ["PENDING", "RUNNING", "SKIPPED", "CANCELLED"]),
        (["READY", "RUNNING"], "PENDING", ["COMPLETED", "FAILED", "CANCELLED"]),
        (["READY", "RUNNING", "FAILED"], "COMPLETED", ["READY", "CANCELLED"]),
        (["READY", "RUNNING", "COMPLETED"], "CANCELLED", []),
        (["SKIPPED"], "READY", []),
        (["CANCELLED"], "PENDING", []),
    ],
)
async def test_illegal_transitions(client, path, target, allowed):
    task = await new_task(client)
    if path:
        await walk(client, task["id"], *path)
    before = await get_task(client, task["id"])
    response = await client.patch(f"{TASKS}/{task['id']}", json={"status": target})
    assert response.status_code == 409, response.text
    error = response.json()
    assert error["error"] == "illegal_transition"
    assert error["details"]["allowed_states"] == allowed
    assert error["details"]["current_state"] == before["status"]
    assert error["details"]["requested_state"] == target
    assert await get_task(client, task["id"]) == before


async def test_unfinished_dependencies_hold_a_task_back(client):
    session = await create(client)
    sid = session["id"]
    a = await new_task(client, title="a", session_id=sid)
    b = await new_task(client, title="b", session_id=sid)
    c = await new_task(client, title="c", session_id=sid, depends_on=[a["id"], b["id"]])
    for target in ("READY", "RUNNING"):
        response = await client.patch(f"{TASKS}/{c['id']}", json={"status": target})
        assert response.status_code == 409
        error = response.json()
        assert error["error"] == "conflict"
        assert sorted(error["details"]["blocked_by"]) == sorted([a["id"], b["id"]])
        assert error["details"]["requested_state"] == target
    # Cancelling or skipping a waiting task needs nothing.
    await finish(client, a["id"])
    response = await client.patch(f"{TASKS}/{c['id']}", json={"status": "READY"})
    assert response.json()["details"]["blocked_by"] == [b["id"]]
    await walk(client, b["id"], "READY", "RUNNING", "FAILED")
    response = await client.patch(f"{TASKS}/{c['id']}", json={"status": "READY"})
    assert response.json()["details"]["blocked_by"] == [b["id"]]
    await patch(client, b["id"], "CANCELLED")
    response = await client.patch(f"{TASKS}/{c['id']}", json={"status": "READY"})
    assert response.json()["details"]["blocked_by"] == [b["id"]]
    assert (await get_task(client, c["id"]))["version"] == 1
    # A skipped dependency is finished.
    d = await new_task(client, title="d", session_id=sid, depends_on=[a["id"]])
    e = await new_task(client, title="e", session_id=sid)
    await add_dependency(client, d["id"], e["id"])
    await patch(client, e["id"], "SKIPPED")
    assert (await walk(client, d["id"], "READY", "RUNNING"))["status"] == "RUNNING"
    assert (await patch(client, c["id"], "SKIPPED"))["status"] == "SKIPPED"


async def test_stale_expected_version(client):
    task = await new_task(client)
    await patch(client, task["id"], "READY", expected_version=1)
    response = await client.patch(
        f"{TASKS}/{task['id']}", json={"status": "RUNNING", "expected_version": 1}
    )
    assert response.status_code == 409
    error = response.json()
    assert error["error"] == "version_conflict"
    assert error["details"]["current_version"] == 2
    assert error["details"]["expected_version"] == 1
    assert (await get_task(client, task["id"]))["status"] == "READY"
    future = await client.patch(
        f"{TASKS}/{task['id']}", json={"status": "RUNNING", "expected_version": 7}
    )
    assert future.status_code == 409
    assert future.json()["error"] == "version_conflict"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": "DONE"},
        {"status": "READY", "expected_version": "1"},
        {"status": "READY", "expected_version": 0},
        {"status": "READY", "title": "renamed"},
    ],
)
async def test_patch_schema_errors(client, body):
    task = await new_task(client)
    response = await client.patch(f"{TASKS}/{task['id']}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert await get_task(client, task["id"]) == task


# --- events --------------------------------------------------------------------------------


async def test_task_events_land_in_the_sessions_log(client):
    session = await create(client)
    sid = session["id"]
    a = await new_task(client, title="a", session_id=sid, required_capabilities=["SQL"])
    b = await new_task(client, title=CRUD_PROMPT, session_id=sid, depends_on=[a["id"]])
    c = await new_task(client, title="c", session_id=sid)
    await add_dependency(client, c["id"], a["id"])
    await walk(client, a["id"], "READY", "RUNNING")
    await patch(client, a["id"], "COMPLETED", result_summary="done")
    result = await decompose(client, b["id"])

    events = [e for e in await session_events(client, sid) if e["type"].startswith("task.")]
    assert all(e["session_id"] == sid for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["task.created"] * 3 + ["task.dependency_added"]
    assert kinds[4:7] == ["task.transition"] * 3
    assert kinds[7:] == ["task.created"] * 7 + ["task.decomposed"]

    created = events[0]["payload"]
    assert created["task_id"] == a["id"]
    assert created["required_capabilities"] == ["sql"]
    assert created["status"] == "PENDING"
    assert created["task_type"] == "code_generation"
    assert events[1]["payload"]["depends_on"] == [a["id"]]
    assert events[3]["payload"] == {"task_id": c["id"], "depends_on": a["id"]}
    moves = [
        (e["payload"]["from"], e["payload"]["to"], e["payload"]["version"]) for e in events[4:7]
    ]
    assert moves == [("PENDING", "READY", 2), ("READY", "RUNNING", 3), ("RUNNING", "COMPLETED", 4)]
    assert events[6]["payload"]["result_summary"] == "done"
    subtask_ids = [t["id"] for t in result["subtasks"]]
    assert [e["payload"]["task_id"] for e in events[7:14]] == subtask_ids
    assert all(e["payload"]["parent_id"] == b["id"] for e in events[7:14])
    decomposed = events[14]["payload"]
    assert decomposed["task_id"] == b["id"]
    assert decomposed["template"] == "crud"
    assert decomposed["subtasks"] == subtask_ids
    assert decomposed["score"] > 0

    only = await client.get(
        f"{API}/sessions/{sid}/events",
        params={"type": ["task.decomposed", "task.dependency_added"]},
    )
    assert [e["type"] for e in only.json()["items"]] == ["task.dependency_added", "task.decomposed"]


async def test_sessionless_task_events_are_global(client):
    task = await new_task(client, title="loose")
    child = await new_task(client, title="child", parent_id=task["id"])
    await add_dependency(client, task["id"], child["id"])
    await finish(client, child["id"])
    await patch(client, task["id"], "READY")
    response = await client.get(f"{API}/events", params={"limit": 1000})
    assert response.status_code == 200
    ours = [
        e
        for e in response.json()["items"]
        if e["payload"].get("task_id") in (task["id"], child["id"])
    ]
    assert all(e["session_id"] is None and e["seq"] is None for e in ours)
    assert [e["type"] for e in ours] == [
        "task.created",
        "task.created",
        "task.dependency_added",
        "task.transition",
        "task.transition",
        "task.transition",
        "task.transition",
    ]
    ids = [e["id"] for e in ours]
    assert ids == sorted(ids)
    scoped = await client.get(f"{API}/events", params={"sessions_only": True, "limit": 1000})
    assert not [e for e in scoped.json()["items"] if e["type"].startswith("task.")]


# --- races ---------------------------------------------------------------------------------


async def test_racing_patches_have_one_winner(client):
    task = await new_task(client)
    url = f"{TASKS}/{task['id']}"
    responses = await asyncio.gather(
        *(client.patch(url, json={"status": "READY"}) for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    assert {r.json()["error"] for r in responses if r.status_code == 409} <= {
        "illegal_transition",
        "version_conflict",
    }
    final = await get_task(client, task["id"])
    assert (final["status"], final["version"]) == ("READY", 2)
    events = (await client.get(f"{API}/events", params={"type": "task.transition"})).json()
    assert len([e for e in events["items"] if e["payload"]["task_id"] == task["id"]]) == 1


async def test_racing_patches_with_expected_version(client):
    task = await new_task(client)
    url = f"{TASKS}/{task['id']}"
    targets = ["READY", "SKIPPED", "CANCELLED"] * 3
    responses = await asyncio.gather(
        *(client.patch(url, json={"status": t, "expected_version": 1}) for t in targets)
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 8
    winner = next(r.json() for r in responses if r.status_code == 200)
    final = await get_task(client, task["id"])
    assert final == winner
    assert final["version"] == 2


async def test_dependencies_are_listed_in_id_order_by_writes_and_reads(client):
    session = await create(client)
    x = await new_task(client, title="x", session_id=session["id"])
    y = await new_task(client, title="y", session_id=session["id"])
    low, high = sorted([x["id"], y["id"]])
    task = await new_task(client, session_id=session["id"], depends_on=[high, low])
    assert task["depends_on"] == [low, high]
    assert (await get_task(client, task["id"]))["depends_on"] == [low, high]


# --- races: writers of one family are serialised, so each check sees the others' writes ---


async def test_opposite_edges_added_at_once_never_make_a_loop(client):
    session = await create(client)
    for _ in range(3):
        a = await new_task(client, title="a", session_id=session["id"])
        b = await new_task(client, title="b", session_id=session["id"])
        responses = await asyncio.gather(
            client.post(f"{TASKS}/{a['id']}/dependencies", json={"depends_on": b["id"]}),
            client.post(f"{TASKS}/{b['id']}/dependencies", json={"depends_on": a["id"]}),
        )
        assert sorted(r.status_code for r in responses) == [200, 422]
        assert (await client.get(f"{TASKS}/{a['id']}/dependencies")).status_code == 200


async def test_racing_decompositions_store_one_plan(client):
    for _ in range(2):
        task = await new_task(client, title=CRUD_PROMPT)
        responses = await asyncio.gather(
            *(client.post(f"{TASKS}/{task['id']}/decompose") for _ in range(3))
        )
        assert sorted(r.status_code for r in responses) == [201, 409, 409]
        assert (await listing(client, parent_id=task["id"]))["total"] == 7


async def test_a_task_never_becomes_ready_with_an_edge_added_meanwhile(client):
    session = await create(client)
    for _ in range(3):
        a = await new_task(client, title="a", session_id=session["id"])
        b = await new_task(client, title="b", session_id=session["id"])
        await asyncio.gather(
            client.patch(f"{TASKS}/{a['id']}", json={"status": "READY"}),
            client.post(f"{TASKS}/{a['id']}/dependencies", json={"depends_on": b["id"]}),
        )
        final = await get_task(client, a["id"])
        assert not (final["status"] == "READY" and b["id"] in final["depends_on"]), final
