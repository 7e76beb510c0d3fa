"""The agent registry and routing over the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from .helpers import API

AGENTS = f"{API}/agents"


async def register(client, expect: int = 201, **fields: Any) -> dict[str, Any]:
    body = {"name": "impl-1", "agent_type": "implementer", "capabilities": ["python"], **fields}
    response = await client.post(AGENTS, json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def beat(client, agent_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"{AGENTS}/{agent_id}/heartbeat", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def route(client, expect: int = 200, **body: Any) -> dict[str, Any]:
    response = await client.post(f"{AGENTS}/route", json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def test_register_get_list_and_deregister(client):
    agent = await register(
        client, capabilities=[" Python", "SQL", "python"], max_concurrent_tasks=3
    )
    assert agent["capabilities"] == ["python", "sql"]
    assert (agent["status"], agent["tier"], agent["success_rate"]) == ("healthy", "COMPETENT", None)
    assert (await client.get(f"{AGENTS}/{agent['id']}")).json() == agent
    other = await register(client, name="rev-1", agent_type="reviewer", capabilities=["review"])
    duplicate = await client.post(
        AGENTS, json={"name": "impl-1", "agent_type": "x", "capabilities": ["a"]}
    )
    assert duplicate.status_code == 409
    assert "impl-1" in duplicate.json()["message"]
    for bad in ({"capabilities": []}, {"name": ""}, {"max_concurrent_tasks": 0}, {"kind": "alien"}):
        await register(client, expect=422, **{"name": "bad", **bad})
    listed = await client.get(AGENTS, params={"capability": "PYTHON"})
    assert [a["name"] for a in listed.json()["items"]] == ["impl-1"]
    everyone = await client.get(AGENTS, params={"tier": "COMPETENT", "kind": "internal"})
    assert [a["name"] for a in everyone.json()["items"]] == ["impl-1", "rev-1"]
    assert (await client.delete(f"{AGENTS}/{other['id']}")).status_code == 204
    assert (await client.get(f"{AGENTS}/{other['id']}")).status_code == 404
    assert (await client.delete(f"{AGENTS}/{other['id']}")).status_code == 404


async def test_the_list_is_paged_like_every_other_list(client):
    for n in range(5):
        await register(client, name=f"impl-{n}", kind="external" if n % 2 else "internal")
    await register(client, name="rev-1", agent_type="reviewer", capabilities=["review"])

    async def listed(**params: Any) -> dict[str, Any]:
        response = await client.get(AGENTS, params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    first = await listed(page_size=2)
    assert {key: first[key] for key in ("total", "page", "page_size")} == {
        "total": 6,
        "page": 1,
        "page_size": 2,
    }
    assert [a["name"] for a in first["items"]] == ["impl-0", "impl-1"]
    pages = [await listed(page=n, page_size=2) for n in (1, 2, 3, 4)]
    assert [[a["name"] for a in p["items"]] for p in pages] == [
        ["impl-0", "impl-1"],
        ["impl-2", "impl-3"],
        ["impl-4", "rev-1"],
        [],
    ]
    assert (await listed())["page_size"] == 20
    # Filters apply before paging: total counts the matching agents, not the fleet.
    python = await listed(capability="python", kind="internal", page=2, page_size=2)
    assert (python["total"], [a["name"] for a in python["items"]]) == (3, ["impl-4"])
    for bad in ({"page": 0}, {"page_size": 0}, {"page_size": 101}, {"page": "x"}):
        refused = await client.get(AGENTS, params=bad)
        assert refused.status_code == 422, bad
        assert refused.json()["error"] == "validation_error"


async def test_heartbeats_statistics_and_metrics(client):
    first = await register(client)
    second = await register(client, name="impl-2", kind="external")
    assert (await beat(client, first["id"], status="offline"))["status"] == "offline"
    busy = await beat(client, second["id"], status="busy", current_load=0.5, tasks_in_progress=1)
    assert (busy["status"], busy["current_load"], busy["tasks_in_progress"]) == ("busy", 0.5, 1)
    assert busy["version"] == second["version"] + 1
    stats = (await client.get(f"{AGENTS}/stats")).json()
    assert stats["total"] == 2
    assert stats["active"] == 1
    assert stats["by_status"] == {"healthy": 0, "degraded": 0, "busy": 1, "offline": 1}
    assert stats["by_kind"] == {"internal": 1, "external": 1}
    assert stats["by_tier"]["COMPETENT"] == 2
    assert stats["average_load"] == 0.25
    metrics = (await client.get("/metrics")).text
    assert "orchestrator_active_agents 1.0" in metrics
    back = await beat(client, first["id"])
    assert back["status"] == "healthy"  # an offline agent that beats again is back
    assert (
        await client.post(f"{AGENTS}/{first['id']}/heartbeat", json={"current_load": 2})
    ).status_code == 422
    unknown = await client.post(f"{AGENTS}/00000000-0000-0000-0000-000000000000/heartbeat")
    assert unknown.status_code == 404
    events = (await client.get(f"{API}/events", params={"limit": 100})).json()["items"]
    assert [e["type"] for e in events if e["type"].startswith("agent.")] == [
        "agent.registered",
        "agent.registered",
        "agent.status_changed",
        "agent.status_changed",
        "agent.status_changed",
    ]
    assert all(e["session_id"] is None for e in events)


async def test_routing_picks_the_best_qualified_agent_and_explains(client):
    light = await register(client, name="light", capabilities=["python", "sql"])
    heavy = await register(client, name="heavy", capabilities=["python", "sql"])
    await register(client, name="reviewer", agent_type="reviewer", capabilities=["python"])
    await beat(client, heavy["id"], current_load=0.9)
    await beat(client, light["id"], current_load=0.1)
    decision = await route(client, required_capabilities=["SQL", "python"])
    assert decision["chosen"]["agent"]["name"] == "light"
    assert [r["agent"]["name"] for r in decision["runners_up"]] == ["heavy"]
    assert decision["considered"] == 2
    assert decision["chosen"]["score"]["load"] == 0.1
    assert decision["chosen"]["score"]["reason"]
    # The task type prefers agents of the suited type.
    review = await route(client, required_capabilities=["python"], task_type="review")
    assert review["chosen"]["agent"]["name"] == "reviewer"
    assert review["chosen"]["score"]["type_matched"] is True
    # Excluded, offline or busy agents are not candidates.
    skipped = await route(client, required_capabilities=["sql"], exclude=[light["id"]])
    assert skipped["chosen"]["agent"]["name"] == "heavy"
    await beat(client, heavy["id"], status="offline")
    await beat(client, light["id"], status="busy")
    nobody = await route(client, expect=409, required_capabilities=["sql"])
    assert nobody["error"] == "no_agent_available"
    assert "offline" in nobody["message"]
    assert "busy" in nobody["message"]
    missing = await route(client, expect=409, required_capabilities=["rust", "python"])
    assert "rust" in missing["message"]
    assert missing["details"]["missing_capabilities"] == ["rust"]
    await route(client, expect=422)


async def test_concurrent_registrations_of_one_name_make_one_agent(client):
    answers = await asyncio.gather(
        *(
            client.post(
                AGENTS, json={"name": "same", "agent_type": "tester", "capabilities": ["qa"]}
            )
            for _ in range(8)
        )
    )
    assert sorted(a.status_code for a in answers) == [201] + [409] * 7
    assert (await client.get(AGENTS)).json()["total"] == 1


async def test_the_guides_register_and_deregister_routes_are_aliases(client):
    # User guide §7 names POST /agents/register and POST /agents/{id}/deregister.
    body = {"name": "guide-1", "agent_type": "implementer", "capabilities": ["python"]}
    made = await client.post(f"{AGENTS}/register", json=body)
    assert made.status_code == 201, made.text
    agent = made.json()
    assert (await client.get(f"{AGENTS}/{agent['id']}")).json() == agent
    assert (await client.post(f"{AGENTS}/register", json=body)).status_code == 409
    assert (await client.post(f"{AGENTS}/register", json={"name": "x"})).status_code == 422
    gone = await client.post(f"{AGENTS}/{agent['id']}/deregister")
    assert gone.status_code == 204
    assert (await client.get(f"{AGENTS}/{agent['id']}")).status_code == 404
    again = await client.post(f"{AGENTS}/{agent['id']}/deregister")
    assert again.status_code == 404
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "post" in paths[f"{AGENTS}/register"]
    assert "post" in paths[f"{AGENTS}/{{agent_id}}/deregister"]
