"""Learned routing on the real app (SQLite and PostgreSQL): two external agents alike in
capabilities and tier build opposite records through real EAP results, and routing, the
agent resource and pulls follow the record for each task type."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import API
from .test_external_agents import SECRET, Agent, ready_task, register

pytestmark = pytest.mark.settings(secret_key=SECRET, task_max_attempts=1)

CAPS = ("python_expert",)


async def work(client: Any, agent: Agent, task_type: str, n: int, *, succeed: bool) -> None:
    """``agent`` takes one READY task of ``task_type`` and reports how it went."""
    await ready_task(client, *CAPS, task_type=task_type, title=f"{task_type} {n}")
    assigned = await agent.pull()
    assert assigned is not None
    if succeed:
        await agent.report(
            assigned["task_id"], execution_time_ms=1000 * (n + 1), cost_usd=0.01, tokens_used=5
        )
    else:
        await agent.report(assigned["task_id"], status="failed", error="no", cost_usd=0.02)


async def route(client: Any, task_type: str) -> dict[str, Any]:
    response = await client.post(
        f"{API}/agents/route", json={"required_capabilities": list(CAPS), "task_type": task_type}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def set_load(client: Any, agent: Agent, load: float) -> None:
    response = await client.post(f"{API}/agents/{agent.id}/heartbeat", json={"current_load": load})
    assert response.status_code == 200, response.text


async def test_routing_pulls_and_the_agent_resource_follow_the_record_per_task_type(client):
    alpha = await register(client, name="alpha", capabilities=list(CAPS))
    beta = await register(client, name="beta", capabilities=list(CAPS))
    # alpha does testing well and code generation badly; beta the other way round.
    for n in range(3):
        await work(client, alpha, "testing", n, succeed=True)
        await work(client, beta, "testing", n, succeed=False)
    for n in range(3):
        await work(client, alpha, "code_generation", n, succeed=False)
        await work(client, beta, "code_generation", n, succeed=True)

    # Alike to the tier rules (COMPETENT, 3 of 6 each); alpha the busier one.
    await set_load(client, alpha, 0.5)
    await set_load(client, beta, 0.0)
    testing = await route(client, "testing")
    assert testing["chosen"]["agent"]["name"] == "alpha"  # the record beats the load
    assert testing["chosen"]["agent"]["tier"] == testing["runners_up"][0]["agent"]["tier"]
    assert testing["chosen"]["score"]["learned"] is True
    assert testing["chosen"]["score"]["record"]["success_rate"] == 1.0
    assert "testing record 3/3 succeeded" in testing["chosen"]["score"]["reason"]
    assert testing["runners_up"][0]["score"]["record"]["success_rate"] == 0.0
    coding = await route(client, "code_generation")
    assert coding["chosen"]["agent"]["name"] == "beta"
    assert coding["chosen"]["score"]["learned"] is True
    # Without records for the type, the tier and load rules decide as before.
    docs = await route(client, "documentation")
    assert docs["chosen"]["agent"]["name"] == "beta"  # the lower load
    assert docs["chosen"]["score"]["learned"] is False
    assert docs["chosen"]["score"]["record"] is None

    shown = (await client.get(f"{API}/agents/{alpha.id}")).json()
    assert (shown["success_count"], shown["failure_count"]) == (3, 3)
    assert shown["records"] == [
        {
            "task_type": "code_generation",
            "attempts": 3,
            "successes": 0,
            "success_rate": 0.0,
            "median_duration_ms": None,
            "mean_cost_usd": pytest.approx(0.02),
            "counts": True,
        },
        {
            "task_type": "testing",
            "attempts": 3,
            "successes": 3,
            "success_rate": 1.0,
            "median_duration_ms": 2000,
            "mean_cost_usd": pytest.approx(0.01),
            "counts": True,
        },
    ]
    beta_records = (await client.get(f"{API}/agents/{beta.id}")).json()["records"]
    assert [(r["task_type"], r["successes"]) for r in beta_records] == [
        ("code_generation", 3),
        ("testing", 0),
    ]

    # Pulls: a clearly worse agent leaves the task to the better one while it is idle.
    await beta.beat()
    coding_task = await ready_task(client, *CAPS, task_type="code_generation", title="more code")
    assert await alpha.pull(expect=204) is None
    taken = await beta.pull()
    assert taken is not None
    assert taken["task_id"] == coding_task["id"]
    # beta is busy now: alpha takes the next one rather than let it wait.
    second = await ready_task(client, *CAPS, task_type="code_generation", title="even more")
    assigned = await alpha.pull()
    assert assigned is not None
    assert assigned["task_id"] == second["id"]


async def test_a_fresh_agent_without_a_record_still_gets_work(client):
    veteran = await register(client, name="veteran", capabilities=list(CAPS))
    for n in range(3):
        await work(client, veteran, "testing", n, succeed=n == 0)  # 1 of 3
    newcomer = await register(client, name="newcomer", capabilities=list(CAPS))
    await set_load(client, veteran, 0.5)
    # Ranked as the average record (here the veteran's own): a tie, which the load breaks.
    # (One routing call: the PostgreSQL run routes from a snapshot a second old.)
    chosen = (await route(client, "testing"))["chosen"]
    assert chosen["agent"]["name"] == "newcomer"
    assert chosen["score"]["learned"] is True
    assert chosen["score"]["record"] is None
    assert "ranked as the average testing record" in chosen["score"]["reason"]
    assert (await client.get(f"{API}/agents/{newcomer.id}")).json()["records"] == []
