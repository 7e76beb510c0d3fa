"""A result moves its session's plan on in its own transaction (both backends): with no
engine running, an agent works a whole plan through, each result making READY what
waited for it and closing the summary it finishes."""

from __future__ import annotations

from uuid import UUID

import pytest

from .helpers import API, create
from .test_engine import every_capability, tasks_of
from .test_external_agents import SECRET, register


@pytest.mark.settings(secret_key=SECRET, engine_enabled=False)
async def test_each_result_opens_what_waited_for_it_without_the_engine(app, client):
    agent = await register(client, name="all-rounder", capabilities=every_capability())
    session = await create(client, template="crud", auto_start=True)
    engine = app.state.components.session_engine
    await engine.step(UUID(session["id"]))  # planned
    await engine.step(UUID(session["id"]))  # its first tasks READY
    before = {t["id"]: t["status"] for t in await tasks_of(client, session["id"])}
    assert "PENDING" in before.values()

    done: list[str] = []
    while (assignment := await agent.pull(expect=None)) is not None:
        await agent.report(assignment["task_id"], output_data={"summary": "done"})
        done.append(assignment["task_id"])

    tasks = await tasks_of(client, session["id"])
    assert {t["status"] for t in tasks} == {"COMPLETED"}  # the summary task too
    leaves = [t for t in tasks if t["id"] in done]
    assert len(leaves) == len(tasks) - 1 == len(set(done))
    # Each dependent turned READY in a result's transaction: its READY transition has
    # the time of a result, that finished its last dependency or a later one (when the
    # session's limit of parallel tasks held it back until then).
    events = (await client.get(f"{API}/sessions/{session['id']}/events")).json()["items"]
    ready_at = {
        e["payload"]["task_id"]: e["at"]
        for e in events
        if e["type"] == "task.transition" and e["payload"]["to"] == "READY"
    }
    finished_at = {
        e["payload"]["task_id"]: e["at"]
        for e in events
        if e["type"] == "task.transition" and e["payload"]["to"] == "COMPLETED"
    }
    for task in tasks:
        if before[task["id"]] == "PENDING" and task["id"] in done:
            last = max(finished_at[d] for d in task["depends_on"])
            assert ready_at[task["id"]] in finished_at.values()
            assert ready_at[task["id"]] >= last
