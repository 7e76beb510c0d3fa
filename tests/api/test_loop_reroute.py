"""After the loop guard stopped an agent on a task, the task goes to another capable agent,
on SQLite and PostgreSQL: claims derive who is barred from the task's attempts in the
database. The agents here pull over EAP; the executor's report is made through the
leases, as the OpenCode executor makes it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from fastapi import FastAPI

from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome
from industrial_orchestrator.domain.tasks.loop_guard import GuardTrip, LoopStop, TripKind
from industrial_orchestrator.services.task_leases import Report, TaskLeases

from .helpers import API
from .test_external_agents import EXTERNAL, SECRET, Agent, attempts, ready_task, register, task

pytestmark = pytest.mark.settings(secret_key=SECRET, task_max_attempts=3)

TRIP = GuardTrip(TripKind.REPEATED_TOOL_CALL, 'the agent called bash {"command":"ls"} 4 times')


async def stop_by_guard(app: FastAPI, agent: Agent, task_id: str, attempt: int) -> None:
    """End ``agent``'s attempt as the OpenCode executor does when the guard trips."""
    leases: TaskLeases = app.state.components.leases
    await leases.report(
        UUID(agent.id),
        Report(
            task_id=UUID(task_id),
            outcome=AttemptOutcome.FAILED,
            attempt=attempt,
            error=TRIP.error,
            tokens_used=120,
            loop_stop=LoopStop(TRIP, rolled_back=("README.md", "scratch.txt")),
        ),
    )


async def pulled(agent: Agent) -> dict[str, Any]:
    assignment = await agent.pull()
    assert assignment is not None
    return assignment


async def test_the_stopped_agent_is_passed_over_and_another_finishes_the_task(
    app: FastAPI, client: Any
) -> None:
    looper = await register(client, name="looper")
    other = await register(client, name="other")
    item = await ready_task(client)
    assert (await pulled(looper))["task_id"] == item["id"]

    await stop_by_guard(app, looper, item["id"], attempt=1)

    assert (await task(client, item["id"]))["status"] == "READY"
    assert await looper.pull(expect=204) is None, "not again to the agent the guard stopped"
    second = await pulled(other)
    assert (second["task_id"], second["attempt"]) == (item["id"], 2)
    await other.report(item["id"], attempt=2)
    assert (await task(client, item["id"]))["status"] == "COMPLETED"
    history = await attempts(client, item["id"])
    assert [(h["agent_id"], h["outcome"]) for h in history] == [
        (looper.id, "failed"),
        (other.id, "completed"),
    ]
    assert history[0]["error"].startswith("stopped by the loop guard: ")


async def test_the_stop_is_an_event_and_a_counter(app: FastAPI, client: Any) -> None:
    looper = await register(client, name="looper")
    await register(client, name="other")
    item = await ready_task(client)
    await pulled(looper)
    await stop_by_guard(app, looper, item["id"], attempt=1)

    response = await client.get(f"{API}/events", params={"limit": 1000})
    [event] = [e for e in response.json()["items"] if e["type"] == "task.loop_stopped"]
    assert event["payload"] == {
        "task_id": item["id"],
        "agent_id": looper.id,
        "attempt": 1,
        "kind": "repeated_tool_call",
        "message": TRIP.message,
        "rolled_back": ["README.md", "scratch.txt"],
        "rolled_back_count": 2,
        "rollback_error": None,
        "tokens_used": 120,
        "requeued": True,
    }
    metrics = (await client.get("/metrics")).text
    assert 'orchestrator_loop_guard_stops_total{kind="repeated_tool_call"} 1.0' in metrics
    assert 'orchestrator_loop_guard_stops_total{kind="no_progress"} 0.0' in metrics


async def test_the_stopped_agent_still_gets_the_other_tasks(app: FastAPI, client: Any) -> None:
    looper = await register(client, name="looper")
    await register(client, name="other")
    first = await ready_task(client, title="First")
    await pulled(looper)
    await stop_by_guard(app, looper, first["id"], attempt=1)
    later = await ready_task(client, title="Later")

    # The first task is the most urgent, and waits for the other agent; this one goes on.
    assignment = await pulled(looper)
    assert assignment["task_id"] == later["id"]
    assert (await task(client, first["id"]))["status"] == "READY"


async def test_once_every_capable_agent_was_stopped_the_first_may_try_again(
    app: FastAPI, client: Any
) -> None:
    looper = await register(client, name="looper")
    other = await register(client, name="other")
    item = await ready_task(client)
    await pulled(looper)
    await stop_by_guard(app, looper, item["id"], attempt=1)
    await pulled(other)
    await stop_by_guard(app, other, item["id"], attempt=2)

    third = await pulled(looper)
    assert (third["task_id"], third["attempt"]) == (item["id"], 3)


async def test_a_rival_gone_offline_does_not_keep_the_task_waiting(
    app: FastAPI, client: Any
) -> None:
    looper = await register(client, name="looper")
    other = await register(client, name="other")
    item = await ready_task(client)
    await pulled(looper)
    await stop_by_guard(app, looper, item["id"], attempt=1)
    assert await looper.pull(expect=204) is None

    response = await client.delete(f"{EXTERNAL}/{other.id}", headers=other.headers())
    assert response.status_code in (200, 204), response.text
    again = await pulled(looper)
    assert (again["task_id"], again["attempt"]) == (item["id"], 2)


async def test_a_rival_without_the_capabilities_does_not_count(app: FastAPI, client: Any) -> None:
    looper = await register(client, name="looper")
    await register(client, name="rustacean", capabilities=["rust"])
    item = await ready_task(client)
    await pulled(looper)
    await stop_by_guard(app, looper, item["id"], attempt=1)
    again = await pulled(looper)
    assert again["attempt"] == 2


async def test_an_ordinary_failure_bars_nobody(client: Any) -> None:
    agent = await register(client, name="looper")
    await register(client, name="other")
    item = await ready_task(client)
    await pulled(agent)
    await agent.report(item["id"], status="failed", error="tests did not pass", attempt=1)
    again = await pulled(agent)
    assert again["attempt"] == 2
