"""The reaper on a controlled clock: grace after a restart, then offline agents and
expired leases, each taken back once even when two reapers race (both backends)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from industrial_orchestrator.coordination.locks import LocalLock
from industrial_orchestrator.domain.agents.agent import AgentKind, AgentStatus, NewAgent
from industrial_orchestrator.domain.tasks.artifacts import ArtifactLimits
from industrial_orchestrator.domain.tasks.lease_rules import UNKNOWN_LEASE_GRACE_SECONDS
from industrial_orchestrator.domain.tasks.task import TaskStatus, TaskType
from industrial_orchestrator.runtime.reaper import LOCK_NAME, Reaper
from industrial_orchestrator.services.agents import AgentService
from industrial_orchestrator.services.task_leases import LeasePolicy, Reaped, TaskLeases
from industrial_orchestrator.services.tasks import NewTask, TaskService
from industrial_orchestrator.workspaces.files import WorkspaceFiles

# In the future, so the app's own reaper (on the real clock) never touches these leases.
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _services(app, clock: Clock, started_at: datetime, home: Path):
    uow = app.state.components.uow
    policy = LeasePolicy(
        lease_seconds=90,
        max_attempts=3,
        heartbeat_seconds=30,
        started_at=started_at,
        artifact_limits=ArtifactLimits(max_bytes=1000, max_count=10),
        artifacts_home=home,
    )
    return (
        AgentService(uow, clock=clock, lease_seconds=90, max_attempts=3),
        TaskService(uow, clock=clock),
        TaskLeases(
            uow,
            clock=clock,
            policy=policy,
            writer=WorkspaceFiles(),
            ledger=app.state.components.ledger,
        ),
    )


async def _leased_task(agents, tasks, leases, name: str):
    agent = await agents.register(
        NewAgent(name, "implementer", ["python"], kind=AgentKind.EXTERNAL)
    )
    task = await tasks.create(NewTask("work", TaskType.CODE_GENERATION, ["python"], 1.0))
    await tasks.move(task.id, TaskStatus.READY)
    assignment = await leases.claim(agent.id)
    assert assignment is not None
    return agent, assignment


async def test_nobody_is_reaped_for_the_time_the_orchestrator_was_down(app, tmp_path):
    clock = Clock(T0)
    agents, tasks, leases = _services(app, clock, T0, tmp_path)
    agent, assignment = await _leased_task(agents, tasks, leases, "a")

    # The orchestrator was down for an hour and has just started again.
    restarted = T0 + timedelta(hours=1)
    clock.now = restarted
    _, _, after_restart = _services(app, clock, restarted, tmp_path)
    assert await after_restart.reap() == Reaped(0, 0)
    clock.now = restarted + timedelta(seconds=89)
    assert await after_restart.reap() == Reaped(0, 0)
    assert (await agents.get(agent.id)).status == AgentStatus.HEALTHY

    # It beats within the grace: it stays, and its lease is renewed from now.
    beat = await agents.heartbeat(agent.id)
    assert [lease.task_id for lease in beat.leases] == [assignment.task.id]
    clock.now = restarted + timedelta(seconds=150)
    assert await after_restart.reap() == Reaped(0, 0)

    # Then silence: more than 3 beats (90 s) after its last one, it is offline.
    clock.now = restarted + timedelta(seconds=89 + 91)
    reaped = await after_restart.reap()
    assert (reaped.expired, reaped.offline) == (1, 1)
    assert (await agents.get(agent.id)).status == AgentStatus.OFFLINE
    back = await tasks.get(assignment.task.id)
    assert (back.status, back.attempt) == (TaskStatus.READY, 1)
    [attempt] = await leases.attempts(back.id)
    assert attempt.outcome == "expired"
    assert (await agents.get(agent.id)).failure_count == 1


async def test_racing_reapers_take_each_lease_back_once(app, tmp_path):
    clock = Clock(T0)
    agents, tasks, leases = _services(app, clock, T0 - timedelta(days=1), tmp_path)
    held = [await _leased_task(agents, tasks, leases, f"agent-{n}") for n in range(4)]
    clock.now = T0 + timedelta(seconds=91)
    results = await asyncio.gather(*(leases.reap() for _ in range(3)))
    assert sum(r.expired for r in results) == 4
    assert sum(r.offline for r in results) == 4  # 91 s of silence: more than 3 beats
    for agent, assignment in held:
        assert (await tasks.get(assignment.task.id)).status == TaskStatus.READY
        assert [a.outcome for a in await leases.attempts(assignment.task.id)] == ["expired"]
        record = await agents.get(agent.id)
        assert (record.failure_count, record.tasks_in_progress) == (1, 0)


async def test_a_reaper_round_is_skipped_while_another_replica_holds_the_lock(app, tmp_path):
    clock = Clock(T0)
    agents, tasks, leases = _services(app, clock, T0 - timedelta(days=1), tmp_path)
    _, assignment = await _leased_task(agents, tasks, leases, "a")
    clock.now = T0 + timedelta(seconds=91)
    lock = LocalLock()
    other_replica = await lock.acquire(LOCK_NAME, 60)
    assert other_replica is not None
    reaper = Reaper(leases, lock, every_seconds=1)
    assert await reaper.run_once() is None
    assert (await tasks.get(assignment.task.id)).status == TaskStatus.RUNNING
    assert await lock.release(LOCK_NAME, other_replica)
    done = await reaper.run_once()
    assert done is not None
    assert done.expired == 1
    # It released the lock after its round.
    assert await lock.acquire(LOCK_NAME, 1) is not None


async def test_a_reaper_round_ends_with_the_maintenance_and_a_skipped_one_without(app, tmp_path):
    clock = Clock(T0)
    _, _, leases = _services(app, clock, T0 - timedelta(days=1), tmp_path)
    rounds: list[int] = []

    async def maintenance() -> None:
        rounds.append(len(rounds) + 1)

    lock = LocalLock()
    reaper = Reaper(leases, lock, every_seconds=1, maintenance=maintenance)
    assert await reaper.run_once() == Reaped(0, 0)
    assert rounds == [1]
    other_replica = await lock.acquire(LOCK_NAME, 60)
    assert await reaper.run_once() is None
    assert rounds == [1]  # that replica's round does it
    assert other_replica is not None


async def test_replicas_on_redis_share_the_reapers_lock(app, backend):
    from industrial_orchestrator.coordination.locks import RedisLock

    components = app.state.components
    await app.state.runtime.reaper.close()  # its background rounds would race for the lock here
    expected = LocalLock if backend == "sqlite" else RedisLock
    assert isinstance(components.lock, expected)
    # Another replica's round in progress: this one skips its own.
    token = await components.lock.acquire(LOCK_NAME, 5)
    assert token is not None
    assert await app.state.runtime.reaper.run_once() is None
    assert await components.lock.release(LOCK_NAME, token)
    assert await app.state.runtime.reaper.run_once() == Reaped(0, 0)


async def test_a_lease_the_agent_does_not_list_is_let_go_after_the_grace(app, tmp_path):
    """The answer to its pull never reached the agent: its heartbeats list other tasks (or
    none), and after ``UNKNOWN_LEASE_GRACE_SECONDS`` the task goes back to the queue, even
    right after a restart, when the reaper would still wait."""
    clock = Clock(T0)
    agents, tasks, leases = _services(app, clock, T0, tmp_path)
    agent, assignment = await _leased_task(agents, tasks, leases, "lost-answer")
    task_id = assignment.task.id

    # Listed, or within the grace (its answer may still be on its way): kept.
    clock.now = T0 + timedelta(seconds=UNKNOWN_LEASE_GRACE_SECONDS + 5)
    assert await leases.let_go_unknown(agent.id, [task_id]) == 0
    clock.now = T0 + timedelta(seconds=UNKNOWN_LEASE_GRACE_SECONDS - 1)
    assert await leases.let_go_unknown(agent.id, []) == 0
    assert (await tasks.get(task_id)).status == TaskStatus.RUNNING

    clock.now = T0 + timedelta(seconds=UNKNOWN_LEASE_GRACE_SECONDS + 1)
    assert await leases.let_go_unknown(agent.id, []) == 1
    assert (await tasks.get(task_id)).status == TaskStatus.READY
    assert await leases.let_go_unknown(agent.id, []) == 0  # once
    # The next pull gets it again, as a new attempt.
    again = await leases.claim(agent.id)
    assert again is not None
    assert (again.task.id, again.attempt.attempt) == (task_id, 2)
