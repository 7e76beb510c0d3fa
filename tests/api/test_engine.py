"""The session engine in the app (both backends): a started session is planned, its tasks
are handed to agents in dependency order, every finished task is checkpointed, and the
verification command sends it back to work until it passes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from industrial_orchestrator.domain.planning.templates import TEMPLATES
from industrial_orchestrator.services.session_engine import ReviewDue

from .helpers import API, act, create
from .test_external_agents import SECRET, Agent, register


def every_capability() -> list[str]:
    return sorted(
        {cap for plan in TEMPLATES.values() for step in plan.steps for cap in step.capabilities}
    )


ENGINE = {"secret_key": SECRET, "engine_enabled": True, "engine_tick_seconds": 0.05}


async def session_of(client: Any, session_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def tasks_of(client: Any, session_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/tasks", params={"session_id": session_id, "page_size": 100})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def until(check, *, within: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def work_through(
    client: Any, agent: Agent, session_id: str, *, artifacts=None, until_status=("COMPLETED",)
) -> list[str]:
    """Pull and complete tasks until the session ends; the titles in the order done."""
    done: list[str] = []
    for _ in range(200):
        shown = await session_of(client, session_id)
        if shown["status"] in until_status:
            return done
        assignment = await agent.pull(expect=None, wait=0.5)
        if assignment is None:
            continue
        tasks = {t["id"]: t for t in await tasks_of(client, session_id)}
        for dependency in tasks[assignment["task_id"]]["depends_on"]:
            assert tasks[dependency]["status"] in ("COMPLETED", "SKIPPED"), (
                f"{assignment['title']} was handed out before {tasks[dependency]['title']}"
            )
        extra = artifacts(assignment) if artifacts else []
        await agent.report(
            assignment["task_id"],
            attempt=assignment["attempt"],
            artifacts=extra,
            tokens_used=10,
            cost_usd=0.01,
            output_data={"summary": f"did {assignment['title']}"},
        )
        done.append(assignment["title"])
    raise AssertionError("the session never ended")


@pytest.mark.settings(**ENGINE)
async def test_a_started_session_is_planned_and_its_tasks_done_in_dependency_order(client):
    agent = await register(client, name="all-rounder", capabilities=every_capability())
    session = await create(
        client,
        title="Todo API",
        initial_prompt="Build a CRUD REST API for todo items with a database",
        template="crud",
        auto_start=True,
    )
    planned = await until(lambda: _phase_is(client, session["id"], "EXECUTING"), within=10)
    assert planned["options"]["template"] == "crud"
    tasks = await tasks_of(client, session["id"])
    assert len(tasks) > 2
    root = next(t for t in tasks if t["parent_id"] is None)
    assert root["title"] == "Todo API"
    done = await work_through(client, agent, session["id"])
    leaves = [t for t in tasks if t["id"] != root["id"]]
    assert sorted(done) == sorted(t["title"] for t in leaves)  # each leaf once
    final = await session_of(client, session["id"])
    assert final["status"] == "COMPLETED"
    assert final["tokens_used"] == 10 * len(done)
    assert all(t["status"] == "COMPLETED" for t in await tasks_of(client, session["id"]))
    checkpoints = (await client.get(f"{API}/sessions/{session['id']}/checkpoints")).json()
    labels = [c["label"] for c in checkpoints["items"]]
    assert "planned" in labels
    assert sum(label.startswith("after task: ") for label in labels) == len(done)
    latest = checkpoints["items"][0]["data"]
    assert len(latest["finished_tasks"]) == len(done)
    assert latest["in_flight"] == {}
    phases = (
        await client.get(f"{API}/sessions/{session['id']}/events", params={"type": "session.phase"})
    ).json()["items"]
    assert [p["payload"]["to"] for p in phases] == ["EXECUTING"]


async def _phase_is(client: Any, session_id: str, phase: str) -> dict[str, Any] | None:
    shown = await session_of(client, session_id)
    return shown if shown["phase"] == phase else None


@pytest.mark.settings(**ENGINE)
async def test_a_failed_verification_sends_the_session_back_to_work(client, tmp_path: Path):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    agent = await register(client, capabilities=["code_generation"])
    session = await create(
        client,
        initial_prompt="Make the check pass",
        template="single",
        workspace=str(workspace),
        verify_command="echo checking; test -f fixed.txt",
        max_review_rounds=2,
        auto_start=True,
    )

    def fix_when_asked(assignment: dict[str, Any]) -> list[dict[str, str]]:
        if "failed" in assignment["input_data"]:
            assert "checking" in assignment["input_data"]  # the output is the feedback
            return [{"path": "fixed.txt", "content": "ok"}]
        return []

    done = await work_through(client, agent, session["id"], artifacts=fix_when_asked)
    assert len(done) == 2
    final = await session_of(client, session["id"])
    assert final["status"] == "COMPLETED"
    assert final["review_round"] == 1
    # The work (and the verification) happened in the session's own tree, not in the
    # operator's workspace.
    tree = Path(final["worktree"])
    assert tree == (tmp_path / "home" / "worktrees" / session["id"]).resolve()
    assert tree != workspace.resolve()
    assert final["branch"] == f"orchestrator/{session['id'][:8]}"
    assert (tree / "fixed.txt").read_text() == "ok"
    assert list(workspace.iterdir()) == []
    events = (await client.get(f"{API}/sessions/{session['id']}/events")).json()["items"]
    phases = [e["payload"]["to"] for e in events if e["type"] == "session.phase"]
    assert phases == ["EXECUTING", "REVIEWING", "EXECUTING", "REVIEWING"]
    terminal = "".join(e["payload"]["text"] for e in events if e["type"] == "session.log")
    assert "checking" in terminal
    assert "verification failed (exit 1)" in terminal
    assert "verification passed" in terminal


@pytest.mark.settings(**ENGINE)
async def test_a_verification_found_due_after_its_verdict_is_not_run_again(
    client, app, tmp_path: Path
):
    """The runner may find a round due just before another task records its verdict
    (steps run concurrently); the command must not run a second time."""
    marker = tmp_path / "runs.txt"
    agent = await register(client, capabilities=["code_generation"])
    session = await create(
        client,
        template="single",
        verify_command=f"echo run >> {marker}",
        auto_start=True,
    )
    await work_through(client, agent, session["id"])
    final = await session_of(client, session["id"])
    assert final["status"] == "COMPLETED"
    assert marker.read_text() == "run\n"

    stale = ReviewDue(UUID(session["id"]), f"echo run >> {marker}", None, review_round=0)
    await app.state.runtime.runner._review(stale)
    assert marker.read_text() == "run\n"
    events = (await client.get(f"{API}/sessions/{session['id']}/events")).json()["items"]
    terminal = [e["payload"]["text"] for e in events if e["type"] == "session.log"]
    assert sum("(verification round 1" in text for text in terminal) == 1
    assert terminal.count("verification passed\n") == 1


@pytest.mark.settings(**ENGINE)
async def test_verification_that_never_passes_ends_partially_completed(client):
    agent = await register(client, capabilities=["code_generation"])
    session = await create(
        client,
        template="single",
        verify_command="exit 3",
        max_review_rounds=1,
        auto_start=True,
    )
    await work_through(client, agent, session["id"], until_status=("PARTIALLY_COMPLETED",))
    final = await session_of(client, session["id"])
    assert final["status"] == "PARTIALLY_COMPLETED"
    assert "still fails after 1 review round" in final["status_reason"]


@pytest.mark.settings(**ENGINE, task_max_attempts=1)
async def test_a_task_that_fails_for_good_ends_the_session(client):
    agent = await register(client, capabilities=["code_generation"])
    session = await create(client, template="single", auto_start=True)
    await until(lambda: _phase_is(client, session["id"], "EXECUTING"))
    assignment = await agent.pull(wait=5)
    assert assignment is not None
    await agent.report(assignment["task_id"], status="failed", error="cannot do it")
    ended = await until(lambda: _status_in(client, session["id"], ("FAILED",)))
    assert "no task could be done" in ended["status_reason"]
    # The ended session's failed task keeps its record: rounds of the engine later (0.05 s
    # each), it is still FAILED, not tidied away as CANCELLED.
    await asyncio.sleep(0.5)
    [task] = await tasks_of(client, session["id"])
    assert task["status"] == "FAILED"


@pytest.mark.settings(**ENGINE)
async def test_pause_takes_work_back_and_stop_cancels_it(client):
    agent = await register(client, capabilities=["code_generation"])
    session = await create(client, template="single", auto_start=True)
    await until(lambda: _phase_is(client, session["id"], "EXECUTING"))
    first = await agent.pull(wait=5)
    assert first is not None
    await act(client, session["id"], "pause")
    back = await until(lambda: _task_status(client, first["task_id"], "READY"))
    assert back["attempt"] == 1
    told = await agent.beat(task_ids=[first["task_id"]])
    assert told["abort"] == [first["task_id"]]  # the agent learns to stop at once
    assert told["leases"] == []
    late = await agent.report(first["task_id"], expect=409, attempt=1)
    assert late["error"] == "lease_lost"
    assert await agent.pull(expect=204) is None  # a paused session hands nothing out
    await act(client, session["id"], "resume")
    second = await agent.pull(wait=5)
    assert second is not None
    assert second["attempt"] == 2
    await act(client, session["id"], "stop")
    await until(lambda: _task_status(client, first["task_id"], "CANCELLED"))
    refused = await agent.report(second["task_id"], expect=409)
    assert refused["error"] == "lease_lost"
    record = (await client.get(f"{API}/agents/{agent.id}")).json()
    assert (record["failure_count"], record["tasks_in_progress"]) == (0, 0)


@pytest.mark.settings(**ENGINE)
async def test_budget_and_timeout_end_the_session(client):
    agent = await register(client, capabilities=["code_generation"])
    spender = await create(client, template="single", max_tokens=5, auto_start=True)
    await until(lambda: _phase_is(client, spender["id"], "EXECUTING"))
    assignment = await agent.pull(wait=5)
    assert assignment is not None
    ack = await agent.report(assignment["task_id"], status="failed", tokens_used=50)
    assert ack["task_status"] in ("READY", "FAILED")
    ended = await until(lambda: _status_in(client, spender["id"], ("FAILED",)))
    assert ended["status_reason"].startswith("budget_exceeded")
    slow = await create(client, template="single", timeout_seconds=1, auto_start=True)
    timed_out = await until(lambda: _status_in(client, slow["id"], ("TIMEOUT",)), within=10)
    assert "longer than 1 s" in timed_out["status_reason"]


@pytest.mark.settings(**ENGINE)
async def test_a_degraded_session_past_its_timeout_ends_failed_saying_so(client):
    session = await create(client, template="single", timeout_seconds=2, auto_start=True)
    await until(lambda: _status_in(client, session["id"], ("DEGRADED",)))
    ended = await until(lambda: _status_in(client, session["id"], ("FAILED",)), within=15)
    assert ended["status_reason"] == "timed out while DEGRADED: ran longer than 2 s"


async def _status_in(client: Any, session_id: str, states: tuple[str, ...]) -> Any:
    shown = await session_of(client, session_id)
    return shown if shown["status"] in states else None


async def _task_status(client: Any, task_id: str, status: str) -> Any:
    response = await client.get(f"{API}/tasks/{task_id}")
    shown = response.json()
    return shown if shown["status"] == status else None


@pytest.mark.settings(**ENGINE)
async def test_a_retry_resumes_from_the_checkpoint_without_redoing_finished_tasks(client):
    agent = await register(client, name="all-rounder", capabilities=every_capability())
    session = await create(
        client,
        initial_prompt="Build a CRUD REST API for todo items with a database",
        template="crud",
        auto_start=True,
    )
    await until(lambda: _phase_is(client, session["id"], "EXECUTING"))
    first_done: list[str] = []
    for _ in range(2):
        assignment = await agent.pull(wait=5)
        assert assignment is not None
        await agent.report(
            assignment["task_id"], output_data={"summary": f"did {assignment['title']}"}
        )
        first_done.append(assignment["title"])
    # Both results are checkpointed before the session fails.
    await until(lambda: _checkpoints_after_tasks(client, session["id"], 2))
    held = await agent.pull(wait=5)  # in flight when the session fails
    assert held is not None
    await act(client, session["id"], "fail", reason="the operator pulled the plug")
    retried = await act(client, session["id"], "retry", expect=201, start=True)
    assert retried["restored_from_checkpoint"] is not None
    await until(lambda: _phase_is(client, retried["id"], "EXECUTING"))
    carried = {t["title"]: t for t in await tasks_of(client, retried["id"])}
    for title in first_done:
        assert carried[title]["status"] == "COMPLETED"
        assert carried[title]["result_summary"] == f"did {title}"
    second_done = await work_through(client, agent, retried["id"])
    assert not set(first_done) & set(second_done), "finished tasks were done again"
    assert held["title"] in second_done
    old_tasks = await tasks_of(client, session["id"])
    parents = {t["parent_id"] for t in old_tasks}
    leaves = {t["title"] for t in old_tasks if t["id"] not in parents}
    assert set(first_done) | set(second_done) == leaves
    assert (await session_of(client, retried["id"]))["status"] == "COMPLETED"


async def _checkpoints_after_tasks(client: Any, session_id: str, count: int) -> bool:
    page = (await client.get(f"{API}/sessions/{session_id}/checkpoints")).json()
    return sum(c["label"].startswith("after task: ") for c in page["items"]) >= count


@pytest.mark.settings(**ENGINE)
async def test_a_session_nobody_can_serve_is_degraded_until_an_agent_comes(client):
    session = await create(client, template="single", auto_start=True)
    degraded = await until(lambda: _status_in(client, session["id"], ("DEGRADED",)))
    assert "no agent can do" in degraded["status_reason"]
    assert "code_generation" in degraded["status_reason"]
    agent = await register(client, capabilities=["code_generation"])
    back = await until(lambda: _status_in(client, session["id"], ("RUNNING",)))
    assert back["status_reason"] == "every waiting task has a capable agent again"
    await work_through(client, agent, session["id"])
    events = (
        await client.get(
            f"{API}/sessions/{session['id']}/events", params={"type": "session.transition"}
        )
    ).json()["items"]
    moves = [(e["payload"]["from"], e["payload"]["to"]) for e in events]
    assert ("RUNNING", "DEGRADED") in moves
    assert ("DEGRADED", "RUNNING") in moves
    assert moves[-1] == ("RUNNING", "COMPLETED")


@pytest.mark.settings(**ENGINE)
async def test_only_degraded_tier_agents_degrade_the_session(client):
    weak = await register(client, name="weak", capabilities=["code_generation"])
    for n in range(10):  # a record of failures: DEGRADED tier
        created = await client.post(
            f"{API}/tasks",
            json={
                "title": f"warm-up {n}",
                "task_type": "code_generation",
                "required_capabilities": ["code_generation"],
            },
        )
        await client.patch(f"{API}/tasks/{created.json()['id']}", json={"status": "READY"})
        assignment = await weak.pull(wait=2)
        assert assignment is not None
        await weak.report(assignment["task_id"], status="failed", error="no")
    assert (await client.get(f"{API}/agents/{weak.id}")).json()["tier"] == "DEGRADED"
    # Leave no warm-up task waiting in the queue.
    while (assignment := await weak.pull(expect=None, wait=0)) is not None:
        await weak.report(assignment["task_id"], status="failed", error="no")
    session = await create(client, template="single", auto_start=True)
    degraded = await until(lambda: _status_in(client, session["id"], ("DEGRADED",)))
    assert "only DEGRADED-tier agents" in degraded["status_reason"]


@pytest.mark.settings(**ENGINE, checkpoint_interval_seconds=0.3)
async def test_a_running_session_is_checkpointed_periodically(client):
    agent = await register(client, capabilities=["code_generation"])
    session = await create(client, template="single", auto_start=True)
    held = await agent.pull(wait=5)
    assert held is not None

    async def periodic() -> list[dict[str, Any]]:
        page = (await client.get(f"{API}/sessions/{session['id']}/checkpoints")).json()
        return [c for c in page["items"] if c["label"] == "periodic"]

    async def taken_while_held() -> list[dict[str, Any]]:
        # One taken before the lease (while the agent waited for a READY task) has
        # nothing in flight; wait for one taken since.
        return [c for c in await periodic() if held["task_id"] in c["data"]["in_flight"]]

    found = await until(taken_while_held)
    assert found[0]["data"]["phase"] == "EXECUTING"
    assert found[0]["data"]["finished_tasks"] == {}
    # Who holds which task, on which attempt: what resuming must recognise.
    lease = found[0]["data"]["in_flight"][held["task_id"]]
    assert (lease["agent_id"], lease["attempt"]) == (agent.id, 1)
    # Two intervals more with the agent sitting on its task: nothing new to record, so
    # looks, not copies of the last checkpoint.
    await asyncio.sleep(0.8)
    assert len(await taken_while_held()) == 1


@pytest.mark.settings(**ENGINE)
async def test_a_session_works_on_at_most_max_parallel_tasks_at_once(client):
    agent = await register(
        client, name="wide", capabilities=every_capability(), max_concurrent_tasks=10
    )
    session = await create(
        client,
        initial_prompt="Build a CRUD REST API for todo items with a database",
        template="crud",
        max_parallel_tasks=1,
        auto_start=True,
    )
    titles: list[str] = []
    for _ in range(200):
        if (await session_of(client, session["id"]))["status"] == "COMPLETED":
            break
        held = await agent.pull(expect=None, wait=0.3)
        if held is None:
            continue
        # While one is in hand, nothing else of the session is handed out.
        assert await agent.pull(expect=204) is None
        active = [
            t for t in await tasks_of(client, session["id"]) if t["status"] in ("READY", "RUNNING")
        ]
        assert [t["id"] for t in active] == [held["task_id"]]
        await agent.report(held["task_id"])
        titles.append(held["title"])
    assert (await session_of(client, session["id"]))["status"] == "COMPLETED"
    assert len(titles) > 2


@pytest.mark.settings(**ENGINE)
async def test_a_fork_whose_named_agents_are_all_gone_is_degraded_until_one_is_back(client):
    chosen = await register(client, name="chosen", capabilities=["code_generation"])
    await register(client, name="other", capabilities=["code_generation"])
    source = await create(client, template="single", auto_start=True)

    async def planned() -> Any:
        page = (await client.get(f"{API}/sessions/{source['id']}/checkpoints")).json()
        return next((c for c in page["items"] if c["label"] == "planned"), None)

    checkpoint = await until(planned)
    await act(client, source["id"], "stop")
    forked = await client.post(
        f"{API}/sessions/{source['id']}/fork",
        json={"checkpoint_id": checkpoint["id"], "agents": ["chosen"], "start": True},
    )
    assert forked.status_code == 201, forked.text
    fork_id = forked.json()["id"]
    left = await client.delete(f"{API}/agents/external/{chosen.id}", headers=chosen.headers())
    assert left.status_code == 204
    # "other" could do the work, but the fork is not for it.
    degraded = await until(lambda: _status_in(client, fork_id, ("DEGRADED",)))
    assert "limited to (chosen)" in degraded["status_reason"]
    back = await register(client, name="chosen", capabilities=["code_generation"])
    await until(lambda: _status_in(client, fork_id, ("RUNNING",)))
    assert len(await work_through(client, back, fork_id)) == 1
