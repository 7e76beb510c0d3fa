"""Work-driven stepping (both backends; two replicas on PostgreSQL): the engine steps a
session when something happened to it or its timer is due, never because other sessions
are busy; a due timer is acted on once, by the one process that owns the session."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import Settings
from industrial_orchestrator.services.session_schedule import SessionSchedule

from .helpers import API, create
from .test_engine import ENGINE as ENGINE_ON
from .test_engine import session_of, tasks_of, until
from .test_external_agents import Agent, register


class Watch:
    """Counts, without changing them, the engine's steps per session and the runner's
    rounds of one app."""

    def __init__(self, app: FastAPI) -> None:
        self.steps: Counter[UUID] = Counter()
        self.rounds = 0
        runner = self._runner = app.state.runtime.runner
        self._coalesce = app.state.components.settings.engine_coalesce_seconds
        engine = runner._engine
        step, run_once = engine.step, runner.run_once

        async def counted_step(session_id: UUID) -> Any:
            self.steps[session_id] += 1
            return await step(session_id)

        async def counted_round(*, look: bool = True) -> None:
            await run_once(look=look)
            self.rounds += 1

        engine.step = counted_step
        runner.run_once = counted_round

    async def settled(self) -> None:
        """Let the runner take in what happened before the watch began (steps put off
        by ``ENGINE_COALESCE_SECONDS`` too), then count from zero."""
        await self.rounds_pass(3)
        await until(lambda: _true(self.idle()))
        await asyncio.sleep(self._coalesce)
        await self.rounds_pass(3)
        await until(lambda: _true(self.idle()))
        self.steps.clear()

    def idle(self) -> bool:
        return self._runner.idle

    async def rounds_pass(self, count: int) -> None:
        target = self.rounds + count
        await until(lambda: _true(self.rounds >= target))


# Results put a step off this long here (ENGINE_COALESCE_SECONDS, 3 s by default): a watch
# waits for such steps before it counts.
ENGINE = {**ENGINE_ON, "engine_coalesce_seconds": 0.3}


async def _true(value: bool) -> bool:
    return value


async def held_session(client: httpx.AsyncClient, agent: Agent, **options: Any) -> str:
    """A RUNNING session whose one task the agent holds (and sits on)."""
    session = await create(client, template="single", auto_start=True, **options)
    assignment = await agent.pull(wait=5)
    assert assignment is not None
    assert assignment["session_id"] == session["id"]

    async def settled() -> bool:
        tasks = await tasks_of(client, session["id"])
        return (await session_of(client, session["id"]))["status"] == "RUNNING" and any(
            t["status"] == "RUNNING" for t in tasks
        )

    await until(settled)
    return str(session["id"])


@pytest.mark.settings(**ENGINE)
async def test_a_session_nobody_touches_is_not_stepped(client: httpx.AsyncClient, app: FastAPI):
    agent = await register(client, capabilities=["code_generation"], max_concurrent_tasks=2)
    quiet = await held_session(client, agent)
    touched = await held_session(client, agent)
    watch = Watch(app)
    await watch.settled()
    await watch.rounds_pass(20)
    # Its log lines are not something the engine decides on either.
    logged = await client.post(
        f"{API}/sessions/{quiet}/logs", json={"stream": "agent", "text": "thinking"}
    )
    assert logged.status_code == 201, logged.text
    await watch.rounds_pass(20)
    assert watch.steps[UUID(quiet)] == 0
    assert watch.steps[UUID(touched)] == 0
    # An operator's move is: that session, and only it, is stepped.
    paused = await client.post(f"{API}/sessions/{touched}/pause")
    assert paused.status_code == 200, paused.text
    await until(lambda: _true(watch.steps[UUID(touched)] >= 1))
    await watch.rounds_pass(20)
    assert watch.steps[UUID(quiet)] == 0
    # The pause took the task back from the agent: the step did its work.
    tasks = await tasks_of(client, touched)
    assert [t["status"] for t in tasks if t["task_type"] != "root"] != ["RUNNING"]


LIMIT = 6


@pytest.mark.settings(**ENGINE, checkpoint_interval_seconds=1.0)
async def test_a_due_timer_is_acted_on_once(client: httpx.AsyncClient, app: FastAPI):
    agent = await register(client, capabilities=["code_generation"])
    watch = Watch(app)
    # The limit leaves a loaded machine (planning, the claim and the watch's settling
    # take seconds there) time for the first periodic timer before it.
    session_id = await held_session(client, agent, timeout_seconds=LIMIT)
    await watch.settled()
    # Nothing touches it: its timers alone move it, a periodic checkpoint each second
    # and the end at its time limit.
    ended = await until(lambda: _status(client, session_id, "TIMEOUT"), within=30)
    assert ended["status_reason"] == f"ran longer than {LIMIT} s"
    checkpoints = (await client.get(f"{API}/sessions/{session_id}/checkpoints")).json()
    periodic = [c for c in checkpoints["items"] if c["label"].startswith("periodic")]
    # The first finds the task taken since the plan's checkpoint; the later ones find
    # nothing new (the agent sits on it) and are looks, not checkpoints.
    assert len(periodic) == 1
    # One step per timer, a look or a checkpoint each second until the limit (a timer
    # set before the plan's own checkpoint may come once early), one for the end's own
    # transition, nothing in between.
    assert watch.steps[UUID(session_id)] <= LIMIT + 2


async def _status(client: httpx.AsyncClient, session_id: str, status: str) -> Any:
    shown = await session_of(client, session_id)
    return shown if shown["status"] == status else None


@pytest.fixture
async def second_replica(settings_for: Settings) -> AsyncIterator[FastAPI]:
    replica = create_app(settings_for)
    async with replica.router.lifespan_context(replica):
        yield replica


# SQLite serves one process: replicas share PostgreSQL.
@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.settings(**ENGINE, checkpoint_interval_seconds=1.0)
async def test_with_two_replicas_one_owner_acts_on_the_timer(
    client: httpx.AsyncClient, app: FastAPI, second_replica: FastAPI
):
    agent = await register(client, capabilities=["code_generation"])
    first, second = Watch(app), Watch(second_replica)
    session_id = await held_session(client, agent, timeout_seconds=3)
    await until(lambda: _status(client, session_id, "TIMEOUT"), within=30)
    sid = UUID(session_id)
    stepped_by = [name for name, watch in (("a", first), ("b", second)) if watch.steps[sid]]
    assert len(stepped_by) == 1, (first.steps[sid], second.steps[sid])
    history = (await client.get(f"{API}/sessions/{session_id}/transitions")).json()
    assert [t["to_state"] for t in history].count("TIMEOUT") == 1


@pytest.mark.settings(**ENGINE)
async def test_a_timer_is_kept_on_the_session_and_taken_once_by_its_owner(
    client: httpx.AsyncClient, app: FastAPI
):
    """``next_due_at``: the owner's step keeps the session's next timer in the database,
    where only the owner takes it, once."""
    agent = await register(client, capabilities=["code_generation"])
    session_id = UUID(await held_session(client, agent, timeout_seconds=600))
    components = app.state.components
    owner = app.state.runtime.runner.owner
    # The same schedule two hours on: the session's 600 s limit is due by then.
    later = SessionSchedule(
        components.uow,
        clock=lambda: datetime.now(UTC) + timedelta(hours=2),
        session_timeout_seconds=3600,
        checkpoint_interval_seconds=3600,
    )

    async def taken() -> list[UUID]:
        return await later.take_due(owner)

    assert await until(taken) == [session_id]  # the runner's step kept it
    assert await later.take_due(owner) == []  # taken once
    wait = await components.schedule.set_timer(session_id)
    assert wait is not None
    assert 0 < wait <= 600
    assert await later.take_due("another process") == []
    assert await later.take_due(owner) == [session_id]
    assert await later.take_due(owner) == []
    # Now the real clock: not due for minutes.
    await components.schedule.set_timer(session_id)
    assert await components.schedule.take_due(owner) == []


@pytest.mark.settings(**ENGINE)
async def test_the_step_that_plans_a_session_opens_its_first_tasks(
    client: httpx.AsyncClient, app: FastAPI
):
    """Not a later step asked for by the plan's events: with many sessions starting
    together, that step waited its turn behind all of theirs."""
    engine = app.state.runtime.runner._engine
    uow = app.state.components.uow
    step = engine.step
    ready_after: list[bool] = []

    async def watched(session_id: UUID) -> Any:
        due = await step(session_id)
        async with uow.reader() as reader:
            tasks = await reader.tasks.of_session(session_id)
        ready_after.append(any(t.status.value == "READY" for t in tasks))
        return due

    engine.step = watched
    session = await create(client, template="crud", auto_start=True)
    await until(lambda: _true(any(ready_after)))
    assert ready_after[0], ready_after
    tasks = await tasks_of(client, session["id"])
    assert [t["title"] for t in tasks if t["status"] == "READY"] == [
        t["title"]
        for t in tasks
        if t["status"] != "COMPLETED" and not t["depends_on"] and t["task_type"] != "root"
    ]


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.settings(**ENGINE, session_lease_seconds=60.0)
async def test_a_replica_leaves_a_session_another_holds_to_it(
    client: httpx.AsyncClient, app: FastAPI, second_replica: FastAPI
):
    """What happens to a session another replica runs is that replica's to step: the
    other tries to take it once, not at every event (a write that fails each time)."""
    agent = await register(client, capabilities=["code_generation"])
    session_id = await held_session(client, agent)
    sid = UUID(session_id)
    runners = [app.state.runtime.runner, second_replica.state.runtime.runner]
    await until(lambda: _true(any(sid in runner._held for runner in runners)))
    other = next(runner for runner in runners if sid not in runner._held)
    tries: list[UUID] = []
    own = other._engine.own

    async def counted(session: UUID, owner: str, lease: float) -> bool:
        tries.append(session)
        return await own(session, owner, lease)

    other._engine.own = counted
    for _ in range(3):
        for verb, state in (("pause", "PAUSED"), ("resume", "RUNNING")):
            moved = await client.post(f"{API}/sessions/{session_id}/{verb}")
            assert moved.status_code == 200, moved.text
            await until(lambda s=state: _status(client, session_id, s))
            await until(lambda: _true(sid not in other._queued and sid not in other._stepping))
    assert tries.count(sid) <= 1, tries
    assert sid not in other._held
