"""The session runner (``runtime/session_runner.py``) on the in-memory unit of work and
a fake clock: the whole service graph as ``bootstrap.wire`` builds it, one or two
"processes" sharing one store, rounds run by hand. What the API suites show with real
databases and the wall clock (``tests/api/test_work_driven_stepping.py``), here in
milliseconds: a session nobody touches is not stepped until its timer, a due timer is
acted on once, a dead process's sessions are taken over when its lease runs out, a
failed step is tried again after a pause."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from industrial_orchestrator.bootstrap import Services, announcing, build_runtime, wire
from industrial_orchestrator.config import Settings, load_settings
from industrial_orchestrator.coordination.event_bus import LocalEventBus
from industrial_orchestrator.coordination.locks import LocalLock
from industrial_orchestrator.domain.agents.agent import AgentKind, NewAgent
from industrial_orchestrator.domain.events import EventType
from industrial_orchestrator.domain.planning.templates import TEMPLATES
from industrial_orchestrator.domain.sessions.actions import SessionAction
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome
from industrial_orchestrator.domain.tasks.task import TaskStatus
from industrial_orchestrator.runtime.session_runner import SessionRunner
from industrial_orchestrator.services.sessions import NewSession
from industrial_orchestrator.services.task_results import Report
from industrial_orchestrator.testing.clock import FakeClock
from industrial_orchestrator.testing.memory.store import Store
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory

pytestmark = pytest.mark.fast

CHECKPOINT_EVERY = 300.0
LEASE = 30.0
EVERY_CAPABILITY = {
    capability
    for template in TEMPLATES.values()
    for step in template.steps
    for capability in step.capabilities
}


class Process:
    """One orchestrator process: its services over the shared store and the shared fake
    clock, its session runner's step workers started, and a count of its steps."""

    def __init__(
        self, settings: Settings, store: Store, clock: FakeClock, bus: LocalEventBus | None = None
    ) -> None:
        bus = LocalEventBus() if bus is None else bus
        uow = MemoryUnitOfWorkFactory(on_commit=announcing(bus), store=store)
        self.services: Services = wire(settings, uow, bus=bus, lock=LocalLock(), clock=clock)
        runner = build_runtime(self.services, monotonic=clock.monotonic).runner
        assert runner is not None
        self.runner: SessionRunner = runner
        self.steps: Counter[UUID] = Counter()
        engine = self.services.session_engine
        step = engine.step

        async def counted(session_id: UUID) -> Any:
            self.steps[session_id] += 1
            return await step(session_id)

        engine.step = counted  # type: ignore[method-assign]

    async def round(self) -> None:
        """One round, and every step, plan and verification it started, done."""
        await self.runner.run_once()
        for _ in range(2000):
            if self.runner.idle:
                return
            await asyncio.sleep(0.001)
        raise AssertionError("the round's steps did not finish")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        _env_file=None,
        # As on PostgreSQL: several processes share the sessions, each stepping those it
        # holds a lease on. Nothing connects to it: the store is the database.
        database_url="postgresql+asyncpg://nobody@127.0.0.1/none",
        orchestrator_home=tmp_path / "home",
        engine_enabled=True,
        internal_agents=False,
        checkpoint_interval_seconds=CHECKPOINT_EVERY,
        session_lease_seconds=LEASE,
        session_timeout_seconds=3600,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def processes(settings: Settings, clock: FakeClock) -> AsyncIterator[Callable[..., Process]]:
    """Makes processes on one store; each is closed at the end (the ones a test let die
    too: their workers are only tasks of this event loop)."""
    store = Store()
    made: list[Process] = []

    def make(bus: LocalEventBus | None = None) -> Process:
        process = Process(settings, store, clock, bus)
        made.append(process)
        return process

    yield make
    for process in made:
        await process.runner.close()


async def started(process: Process) -> Process:
    await process.runner.start(rounds=False)
    return process


async def held_session(process: Process, clock: FakeClock) -> UUID:
    """A RUNNING session whose one task an external agent holds (and sits on)."""
    services = process.services
    agent = await services.agents.register(
        NewAgent("worker", "implementer", ["code_generation"], kind=AgentKind.EXTERNAL)
    )
    created = await services.sessions.create(
        NewSession("s", "build it", auto_start=True, options=SessionOptions(template="single"))
    )
    session_id = created.session.id
    await process.round()  # planned: the plan comes back in a task of the runner's
    await process.round()  # its task opened
    assignment = await services.leases.claim(agent.id)
    assert assignment is not None
    assert assignment.task.session_id == session_id
    await settled(process, session_id)
    assert (await services.sessions.get(session_id)).status == SessionState.RUNNING
    async with services.uow.reader() as unit:
        [task] = await unit.tasks.of_session(session_id)
    assert task.status == TaskStatus.RUNNING
    process.steps.clear()
    return session_id


async def settled(process: Process, session_id: UUID) -> None:
    """Rounds until one steps the session no more: what happened to it is taken in."""
    for _ in range(10):
        before = process.steps[session_id]
        await process.round()
        if process.steps[session_id] == before:
            return
    raise AssertionError("the session is stepped round after round")


async def periodic_checkpoints(services: Services, session_id: UUID) -> int:
    checkpoints, _ = await services.sessions.checkpoints(session_id, offset=0, limit=100)
    return sum(1 for c in checkpoints if c.label == "periodic")


async def test_a_session_nobody_touches_is_not_stepped_until_its_timer_is_due(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    process = await started(processes())
    session_id = await held_session(process, clock)
    for _ in range(5):
        clock.advance(CHECKPOINT_EVERY / 10)
        await process.round()
    assert process.steps[session_id] == 0
    clock.advance(CHECKPOINT_EVERY / 2 + 1)  # past the periodic checkpoint's timer
    await process.round()
    assert process.steps[session_id] == 1
    assert await periodic_checkpoints(process.services, session_id) == 1
    for _ in range(3):
        await process.round()
    assert process.steps[session_id] == 1  # acted on once


async def test_with_two_processes_one_owner_acts_on_a_due_timer_once(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    first, second = await started(processes()), await started(processes())
    session_id = await held_session(first, clock)
    await second.round()  # it finds the session held by the first, and leaves it
    # Both live on (renewing what they hold as they go) past the periodic timer, the
    # second looking first each time.
    rounds = int(CHECKPOINT_EVERY / (LEASE / 3)) + 1
    for n in range(rounds):
        if n == rounds - 1:
            assert first.steps[session_id] == second.steps[session_id] == 0
        clock.advance(LEASE / 3)
        await second.round()
        await first.round()
    await second.round()
    assert (first.steps[session_id], second.steps[session_id]) == (1, 0)
    assert await periodic_checkpoints(first.services, session_id) == 1


async def test_a_timer_taken_by_a_renewal_round_before_this_process_expected_it_is_set_again(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    """Setting a timer writes its moment, then keeps its own a little later (the write
    took time). A renewal round in between takes the written timer: the step it causes
    must write the next one, or the session is never stepped again by a timer (its time
    limit never acted on): seen once under CI's load."""
    process = await started(processes())
    schedule = process.runner._schedule
    set_timer = schedule.set_timer
    written: list[datetime] = []
    slow_write = 1.0

    async def slowly_set(session_id: UUID, *, slack_seconds: float = 0.0) -> float | None:
        began = clock()
        wait = await set_timer(session_id, slack_seconds=slack_seconds)
        if wait is not None:
            written.append(began + timedelta(seconds=max(0.0, wait) + slack_seconds))
        clock.advance(slow_write)
        return wait

    schedule.set_timer = slowly_set  # type: ignore[method-assign]
    session_id = await held_session(process, clock)
    # Past the written moment, before this process's own: a renewal round (the last
    # renewal was long ago) takes the timer.
    clock.advance((written[-1] - clock()).total_seconds() + slow_write / 2)
    await process.round()
    assert process.steps[session_id] == 1
    # The next periodic timer, and a renewal round or two after it: stepped again.
    for _ in range(int(CHECKPOINT_EVERY / (LEASE / 3)) + 2):
        clock.advance(LEASE / 3)
        await process.round()
    assert process.steps[session_id] == 2


async def test_a_fleet_change_has_each_process_look_at_its_own_sessions_only(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    """Both processes hear that an agent joined (or left, or changed tier); the sessions
    with work waiting are looked at again, each by the process that holds it: the other,
    which found it held already, does not try to take it again at every such change."""
    first, second = await started(processes()), await started(processes())
    services = first.services
    created = await services.sessions.create(
        NewSession("s", "build it", auto_start=True, options=SessionOptions(template="single"))
    )
    session_id = created.session.id
    await first.round()  # planned
    await first.round()  # its task opened: READY, nobody to take it
    await settled(first, session_id)
    async with services.uow.reader() as unit:
        [task] = await unit.tasks.of_session(session_id)
    assert task.status == TaskStatus.READY
    tries: Counter[UUID] = Counter()
    own = second.services.session_engine.own

    async def counted(session_id: UUID, owner: str, lease_seconds: float) -> bool:
        tries[session_id] += 1
        return await own(session_id, owner, lease_seconds)

    second.services.session_engine.own = counted  # type: ignore[method-assign]
    await second.round()  # it finds the session's events, and the session held
    assert tries[session_id] == 1
    first.steps.clear()
    for n in range(3):
        await second.services.agents.register(
            NewAgent(f"joined-{n}", "implementer", ["python"], kind=AgentKind.EXTERNAL)
        )
        await second.round()
        await first.round()
    assert tries[session_id] == 1
    assert second.steps[session_id] == 0
    assert first.steps[session_id] == 3  # its owner looks at its health each time


async def test_a_dead_processs_sessions_are_taken_over_when_its_lease_runs_out(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    dead, alive = await started(processes()), await started(processes())
    session_id = await held_session(dead, clock)
    # From here the first process runs no round: it died without giving anything up.
    await alive.round()
    clock.advance(LEASE / 2)
    await alive.round()
    assert alive.steps[session_id] == 0
    clock.advance(LEASE / 2 + 1)  # the dead one's lease ran out
    await alive.round()
    assert alive.steps[session_id] == 1
    events = await alive.services.events.for_session(session_id, after_seq=0, limit=500)
    [taken] = [e for e in events if e.type == EventType.SESSION_TAKEN_OVER]
    assert taken.payload["from"] == dead.runner.owner
    assert taken.payload["to"] == alive.runner.owner
    # Its timer is the new owner's now.
    clock.advance(CHECKPOINT_EVERY)
    await alive.round()
    assert alive.steps[session_id] == 2
    assert await periodic_checkpoints(alive.services, session_id) == 1


async def test_a_step_that_failed_is_tried_again_after_a_pause_not_at_once(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    process = await started(processes())
    session_id = await held_session(process, clock)
    engine = process.services.session_engine
    step = engine.step
    failures = [RuntimeError("the database had a bad moment")]

    async def failing_once(session_id: UUID) -> Any:
        if failures:
            process.steps[session_id] += 1
            raise failures.pop()
        return await step(session_id)

    engine.step = failing_once  # type: ignore[method-assign]
    clock.advance(CHECKPOINT_EVERY + 1)
    await process.round()
    assert process.steps[session_id] == 1
    assert not failures
    clock.advance(1)
    await process.round()
    assert process.steps[session_id] == 1  # not hammered
    clock.advance(5)
    await process.round()
    assert process.steps[session_id] == 2
    assert await periodic_checkpoints(process.services, session_id) == 1


async def test_a_time_limit_counts_running_time_only_also_when_the_step_skips_the_history(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    """The step reads a session's history only when the time since its start is past its
    limit (``running_at_most``): a session paused for longer than its limit is read, and
    lives on; one that ran past it ends TIMEOUT."""
    process = await started(processes())
    services = process.services
    await services.agents.register(
        NewAgent("worker", "implementer", ["code_generation"], kind=AgentKind.EXTERNAL)
    )
    created = await services.sessions.create(
        NewSession(
            "s",
            "build it",
            auto_start=True,
            options=SessionOptions(template="single", timeout_seconds=100),
        )
    )
    session_id = created.session.id
    step = services.session_engine.step
    clock.advance(50)
    await step(session_id)
    assert (await services.sessions.get(session_id)).status == SessionState.RUNNING
    await services.sessions.act(session_id, SessionAction.PAUSE)
    clock.advance(150)
    await services.sessions.act(session_id, SessionAction.RESUME)
    clock.advance(10)  # 210 s since it started, 60 s of them running
    await step(session_id)
    assert (await services.sessions.get(session_id)).status == SessionState.RUNNING
    clock.advance(45)  # 105 s running
    await step(session_id)
    ended = await services.sessions.get(session_id)
    assert ended.status == SessionState.TIMEOUT
    assert ended.status_reason == "ran longer than 100 s"


async def test_results_within_the_gap_wait_for_one_step_and_the_last_is_stepped_at_once(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    """``ENGINE_COALESCE_SECONDS`` (3 by default): results that come within it of the
    session's last step are taken in by one step when it has passed, their after-task
    checkpoints by one commit; the next tasks are READY at each result all the same, and
    the plan's last result is stepped at once."""
    process = await started(processes())
    services = process.services
    agent = await services.agents.register(
        NewAgent("worker", "implementer", sorted(EVERY_CAPABILITY), kind=AgentKind.EXTERNAL)
    )
    created = await services.sessions.create(
        NewSession("s", "build it", auto_start=True, options=SessionOptions(template="crud"))
    )
    session_id = created.session.id
    await process.round()  # planned
    await process.round()  # its first task opened
    await settled(process, session_id)

    async def do_one() -> None:
        assignment = await services.leases.claim(agent.id)
        assert assignment is not None
        await services.leases.report(
            agent.id,
            Report(assignment.task.id, AttemptOutcome.COMPLETED, assignment.attempt.attempt),
        )

    clock.advance(10)
    process.steps.clear()
    await do_one()
    await process.round()
    assert process.steps[session_id] == 1  # stepped long ago: at once
    await do_one()
    await process.round()
    await do_one()
    await process.round()
    assert process.steps[session_id] == 1  # both wait: the plan goes on without a step
    commits_before = len(await after_task_checkpoints(services, session_id))
    clock.advance(3)
    await process.round()
    assert process.steps[session_id] == 2  # one step for both
    after = await after_task_checkpoints(services, session_id)
    assert len(after) == commits_before + 2
    assert after[-1].data["commit"] == after[-2].data["commit"]  # one commit for both
    while True:  # the rest, each within the gap of the step before
        await do_one()
        await process.round()
        async with services.uow.reader() as unit:
            tasks = await unit.tasks.of_session(session_id)
        if all(task.status == TaskStatus.COMPLETED for task in tasks):
            break
    # The last result: stepped at once, the session COMPLETED without waiting the gap.
    assert (await services.sessions.get(session_id)).status == SessionState.COMPLETED


async def after_task_checkpoints(services: Services, session_id: UUID) -> list[Any]:
    checkpoints, _ = await services.sessions.checkpoints(session_id, offset=0, limit=100)
    return sorted((c for c in checkpoints if c.label.startswith("after")), key=lambda c: c.seq)


async def test_a_process_looks_at_the_log_only_for_news_of_sessions_it_may_hold(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    """Wake-ups name the sessions a commit calls to step (as the Redis bus carries them
    across replicas; here the two processes share one bus). A process whose runner loop
    hears of sessions another live process holds does not read the log for it; news of
    a session nobody holds yet, or news that names none (a fleet change), is looked at."""
    bus = LocalEventBus()
    first = await started(processes(bus))
    session_id = await held_session(first, clock)
    second = processes(bus)
    looks: list[bool] = []
    run_once = second.runner.run_once

    async def recorded(*, look: bool = True) -> None:
        looks.append(look)
        await run_once(look=look)

    second.runner.run_once = recorded  # type: ignore[method-assign]
    await second.runner.start()  # its loop of rounds, woken by the bus (and a 1 s tick)
    await _rounds(looks, 1)  # the first: every running session, this one held elsewhere
    services = first.services
    async with services.uow.reader() as unit:
        [task] = await unit.tasks.of_session(session_id)
        _, attempt = await unit.attempts.with_task(task.id)
    assert attempt is not None
    await services.leases.report(
        attempt.agent_id, Report(task.id, AttemptOutcome.COMPLETED, attempt.attempt)
    )
    await _rounds(looks, 2)
    assert looks[1] is False  # the result named only the first's session
    await services.sessions.create(
        NewSession("t", "build it too", auto_start=True, options=SessionOptions(template="single"))
    )
    await _rounds(looks, 3)
    assert looks[2] is True  # a session nobody holds yet
    await services.agents.register(
        NewAgent("joined", "implementer", ["python"], kind=AgentKind.EXTERNAL)
    )
    await _rounds(looks, 4)
    assert looks[3] is True  # the fleet changed: whose sessions wait on agents is a look
    assert second.steps[session_id] == 0


async def _rounds(looks: list[bool], count: int) -> None:
    """Until the runner loop has begun ``count`` rounds (the real clock: its wake-ups)."""
    for _ in range(500):
        if len(looks) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(looks)} rounds, not {count}")
