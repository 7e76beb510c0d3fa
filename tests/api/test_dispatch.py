"""Internal agents driven by an executor of this process (both backends): the dispatcher
leases tasks for them, the executor's outcomes and output go through the same leases as
an external agent's, and tasks taken back are aborted on the executor."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from uuid import UUID

import pytest

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, NewAgent
from industrial_orchestrator.domain.events import LogStream
from industrial_orchestrator.domain.tasks.artifacts import new_artifact
from industrial_orchestrator.domain.tasks.task import TaskStatus
from industrial_orchestrator.executors.base import Job, Outcome
from industrial_orchestrator.runtime.dispatcher import EXECUTOR_KEY, Dispatcher

from .helpers import API, act, create
from .test_engine import ENGINE, _status_in, session_of, tasks_of, until


class ScriptedExecutor:
    """Completes each task after ``gate`` opens, writing one artifact and one log line;
    fails the tasks whose title contains ``fail_on``."""

    name = "scripted"
    unavailable_reason = None

    def __init__(self, *, fail_on: str = "\0") -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.fail_on = fail_on

    async def close(self) -> None:
        self.gate.set()

    async def execute(self, job: Job) -> Outcome:
        self.started.append(job.task.title)
        await job.emit(LogStream.AGENT, f"working on {job.task.title}\n")
        await self.gate.wait()
        if self.fail_on in job.task.title:
            return Outcome(succeeded=False, error="scripted failure")
        artifact = new_artifact(f"{job.task.id}.txt", b"done", None)
        return Outcome(
            succeeded=True,
            summary=f"{job.agent.name} did it",
            artifacts=[artifact],
            tokens_used=3,
            cost_usd=0.001,
        )


async def _internal_agent(app: Any, name: str = "inside", *, room: int = 2) -> Agent:
    agent: Agent = await app.state.components.agents.register(
        NewAgent(
            name,
            "implementer",
            ["code_generation"],
            kind=AgentKind.INTERNAL,
            max_concurrent_tasks=room,
            metadata={EXECUTOR_KEY: "scripted"},
        )
    )
    return agent


def _dispatcher(app: Any, executor: ScriptedExecutor, leases: Any = None) -> Dispatcher:
    components = app.state.components
    return Dispatcher(
        components.agents,
        leases or components.leases,
        {"scripted": executor},
        sessions=components.sessions,
        contexts=components.contexts,
        gate=components.session_engine.gate,
    )


@pytest.mark.settings(**ENGINE)
async def test_an_executor_does_a_sessions_tasks_through_the_leases(app, client):
    executor = ScriptedExecutor()
    dispatcher = _dispatcher(app, executor)
    agent = await _internal_agent(app)
    session = await create(client, template="single", auto_start=True)
    assert await until(dispatcher.run_once) == 1  # as soon as the engine made it READY
    [task] = await tasks_of(client, session["id"])
    assert task["status"] == "RUNNING"
    assert [str(t) for t in dispatcher.running(agent.id)] == [task["id"]]
    executor.gate.set()
    done = await until(lambda: _status_in(client, session["id"], ("COMPLETED",)))
    assert done["tokens_used"] == 3
    [finished] = await tasks_of(client, session["id"])
    assert finished["result_summary"] == "inside did it"
    artifacts = (await client.get(f"{API}/tasks/{finished['id']}/artifacts")).json()
    assert [a["path"] for a in artifacts] == [f"{finished['id']}.txt"]
    events = (await client.get(f"{API}/sessions/{session['id']}/events")).json()["items"]
    assert any(e["type"] == "session.log" and "working on" in e["payload"]["text"] for e in events)
    record = (await client.get(f"{API}/agents/{agent.id}")).json()
    assert (record["success_count"], record["tasks_in_progress"]) == (1, 0)
    await dispatcher.close()


@pytest.mark.settings(**ENGINE)
async def test_its_loop_offers_on_work_news_without_beating_again(app, client):
    """The loop beats on its own timer (an hour here) and offers whenever a commit may
    have work: the READY task is taken at once, with no beat in between."""
    executor = ScriptedExecutor()
    components = app.state.components
    dispatcher = Dispatcher(
        components.agents,
        components.leases,
        {"scripted": executor},
        sessions=components.sessions,
        contexts=components.contexts,
        gate=components.session_engine.gate,
        bus=components.bus,
        beat_seconds=3600,
    )
    agent = await _internal_agent(app)
    registered = (await client.get(f"{API}/agents/{agent.id}")).json()["last_heartbeat"]
    await dispatcher.start()
    try:

        async def beat_once() -> str | None:
            beat = (await client.get(f"{API}/agents/{agent.id}")).json()["last_heartbeat"]
            return beat if beat != registered else None

        first_beat = await until(beat_once)
        session = await create(client, template="single", auto_start=True)
        await until(lambda: _started(executor))
        [task] = await tasks_of(client, session["id"])
        assert task["status"] == "RUNNING"
        assert [str(t) for t in dispatcher.running(agent.id)] == [task["id"]]
        record = (await client.get(f"{API}/agents/{agent.id}")).json()
        assert record["last_heartbeat"] == first_beat
        # Closing does not wait for the loop's next beat (an hour away) to stop it.
        await asyncio.wait_for(dispatcher.close(), timeout=5)
    finally:
        await dispatcher.close()
    assert dispatcher.running(agent.id) == []  # closing aborted the job in flight


@pytest.mark.settings(**ENGINE)
async def test_between_beats_an_executor_that_cannot_work_costs_no_read(app, client):
    """No model, say: an offer between two beats reads nothing (every commit with work
    news wakes the dispatcher); the beat marks the agent OFFLINE, saying why."""
    executor = ScriptedExecutor()
    executor.unavailable_reason = "no model is configured"  # type: ignore[assignment]
    dispatcher = _dispatcher(app, executor)
    agent = await _internal_agent(app)
    await create(client, template="single", auto_start=True)
    searches = 0
    search = dispatcher._agents.search

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal searches
        searches += 1
        return await search(*args, **kwargs)

    dispatcher._agents.search = counted  # type: ignore[method-assign]
    assert await dispatcher.run_once(beat=False) == 0
    assert searches == 0
    assert await dispatcher.run_once() == 0
    assert searches == 1
    record = (await client.get(f"{API}/agents/{agent.id}")).json()
    assert record["status"] == "offline"
    assert record["metadata"]["offline_reason"] == "no model is configured"
    await dispatcher.close()


async def _started(executor: ScriptedExecutor) -> list[str] | None:
    return executor.started or None


@pytest.mark.settings(**ENGINE)
async def test_tasks_taken_back_are_aborted_on_the_executor(app, client):
    executor = ScriptedExecutor()
    dispatcher = _dispatcher(app, executor)
    agent = await _internal_agent(app)
    session = await create(client, template="single", auto_start=True)
    assert await until(dispatcher.run_once) == 1
    await act(client, session["id"], "pause")
    [task] = await tasks_of(client, session["id"])
    await until(lambda: _task_ready(client, task["id"]))
    assert await dispatcher.run_once() == 0  # paused: nothing handed out
    assert dispatcher.running(agent.id) == []  # the beat told it to abort
    await act(client, session["id"], "resume")
    assert await until(dispatcher.run_once) == 1
    executor.gate.set()
    await until(lambda: _status_in(client, session["id"], ("COMPLETED",)))
    attempts = (await client.get(f"{API}/tasks/{task['id']}/attempts")).json()
    assert [a["outcome"] for a in attempts] == ["released", "completed"]
    await dispatcher.close()


@pytest.mark.settings(**ENGINE, task_max_attempts=1)
async def test_an_executor_failure_fails_the_task(app, client):
    executor = ScriptedExecutor(fail_on="")
    dispatcher = _dispatcher(app, executor)
    await _internal_agent(app)
    session = await create(client, template="single", auto_start=True)
    await until(dispatcher.run_once)
    executor.gate.set()
    failed = await until(lambda: _status_in(client, session["id"], ("FAILED",)))
    assert "no task could be done" in failed["status_reason"]
    assert (await session_of(client, session["id"]))["status"] == "FAILED"
    await dispatcher.close()


class StepAfterFirstClaim:
    """The leases, but when the first agent asks and gets nothing, the engine steps the
    session (its step makes the task READY), and the next agent asks after that step, or
    after a second if the step is held up."""

    def __init__(self, leases: Any, engine: Any, first: UUID, session_id: UUID) -> None:
        self._leases = leases
        self._engine = engine
        self._first = first
        self._session_id = session_id
        self.stepped: asyncio.Task[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._leases, name)

    async def claim(self, agent_id: UUID) -> Any:
        assignment = await self._leases.claim(agent_id)
        if agent_id == self._first and assignment is None and self.stepped is None:
            self.stepped = asyncio.create_task(self._engine.step(self._session_id))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.stepped), 1.0)
        return assignment


async def test_a_task_made_ready_while_the_agents_are_offered_work_waits_for_the_next_offer(
    app, client
):
    """Offered in order: a task that turned READY after the first agent asked is not
    given to the second one before the first could have it."""
    components = app.state.components
    first = await _internal_agent(app, "a-first", room=1)
    second = await _internal_agent(app, "b-second", room=1)
    session = await create(client, template="single", auto_start=True)
    session_id = UUID(session["id"])
    # Planned by the planning part alone, which opens its task with the plan: the task
    # is put back to PENDING, for the next step to open it during the offer.
    engine = components.session_engine
    await engine._planning.step(await components.sessions.get(session_id))
    [task] = await tasks_of(client, session["id"])
    assert task["status"] == "READY"
    async with components.uow() as uow:
        await uow.tasks.lock_family(session_id)
        opened = await uow.tasks.get(UUID(task["id"]))
        assert opened is not None
        back = opened.evolve(status=TaskStatus.PENDING, version=opened.version + 1)
        assert await uow.tasks.save(opened, back)
        await uow.commit()
    leases = StepAfterFirstClaim(components.leases, components.session_engine, first.id, session_id)
    executor = ScriptedExecutor()
    dispatcher = _dispatcher(app, executor, leases)

    assert await dispatcher.run_once() == 0  # the step waited for the offer to end
    assert leases.stepped is not None
    await leases.stepped
    assert (await client.get(f"{API}/tasks/{task['id']}")).json()["status"] == "READY"
    assert await dispatcher.run_once() == 1
    assert [str(t) for t in dispatcher.running(first.id)] == [task["id"]]
    assert dispatcher.running(second.id) == []
    await dispatcher.close()


async def _task_ready(client: Any, task_id: str) -> bool:
    return bool((await client.get(f"{API}/tasks/{task_id}")).json()["status"] == "READY")
