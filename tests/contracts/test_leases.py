"""A lease written in one go (``AttemptRepository.open``): the task, the agent, the attempt
and the events all written, or none of them."""

from __future__ import annotations

import asyncio

import pytest

from industrial_orchestrator.domain.agents.agent import Agent
from industrial_orchestrator.domain.events import EventType, NewEvent
from industrial_orchestrator.domain.tasks import events as task_events
from industrial_orchestrator.domain.tasks.lease_rules import agent_with_lease, lease_task
from industrial_orchestrator.domain.tasks.task import Task
from industrial_orchestrator.domain.tasks.task import TaskStatus as T
from industrial_orchestrator.services.ports import (
    LeaseRefused,
    NewLease,
    OpenedLease,
    UnitOfWorkFactory,
)

from .builders import agent, at, committed, line, session, task


def _lease(ready: Task, worker: Agent) -> NewLease:
    running, attempt = lease_task(ready, worker, now=at(10), lease_seconds=60)
    return NewLease(
        task=ready,
        running=running,
        agent=worker,
        booked=agent_with_lease(worker, now=at(10)),
        attempt=attempt,
        events=[
            task_events.task_transition(ready, running),
            task_events.task_leased(running, attempt),
        ],
    )


async def _stored(uow: UnitOfWorkFactory, *workers: Agent) -> None:
    async with uow() as unit:
        for worker in workers:
            await unit.agents.add(worker)
        await unit.commit()


async def _ready(uow: UnitOfWorkFactory, *, in_session: bool = True) -> tuple[Task, Agent]:
    """A READY task (of a session, or of none) and an agent, stored."""
    owner = session(0)
    ready = task(1, owner.id if in_session else None, status=T.READY)
    worker = agent("ada")
    await committed(uow, *([owner] if in_session else []), tasks=(ready,))
    await _stored(uow, worker)
    return ready, worker


async def _nothing_written(uow: UnitOfWorkFactory, lease: NewLease) -> None:
    async with uow.reader() as unit:
        assert await unit.tasks.get(lease.task.id) == lease.task
        assert await unit.agents.get(lease.agent.id) == lease.agent
        assert await unit.attempts.of_task(lease.task.id) == []
        assert await unit.events.after(0, limit=10) == []


async def test_a_lease_writes_the_task_the_agent_the_attempt_and_the_events(
    uow: UnitOfWorkFactory, heard: list[NewEvent]
):
    ready, worker = await _ready(uow)
    async with uow() as unit:  # the session's first numbers are taken already
        await unit.events.append([line(ready.session_id, "before")])
        await unit.commit()
    lease = _lease(ready, worker)
    async with uow.single() as unit:
        assert await unit.attempts.open(lease) == OpenedLease([])
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.tasks.get(ready.id) == lease.running
        assert await unit.agents.get(worker.id) == lease.booked
        assert await unit.attempts.of_task(ready.id) == [lease.attempt]
        logged = await unit.events.for_session(ready.session_id, after_seq=0, limit=10)
    assert [(e.seq, e.type) for e in logged] == [
        (1, EventType.SESSION_LOG),
        (2, EventType.TASK_TRANSITION),
        (3, EventType.TASK_LEASED),
    ]
    assert [e.payload for e in logged[1:]] == [e.payload for e in lease.events]
    assert heard[1:] == list(lease.events)  # the commit's listeners hear of them


async def test_a_lease_of_a_task_outside_any_session_logs_its_events_unnumbered(
    uow: UnitOfWorkFactory,
):
    ready, worker = await _ready(uow, in_session=False)
    lease = _lease(ready, worker)
    async with uow.single() as unit:
        assert await unit.attempts.open(lease) == OpenedLease([])
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.tasks.get(ready.id) == lease.running
        logged = await unit.events.after(0, limit=10)
    assert [(e.session_id, e.seq, e.type) for e in logged] == [
        (None, None, EventType.TASK_TRANSITION),
        (None, None, EventType.TASK_LEASED),
    ]


async def test_a_task_no_longer_as_read_is_not_leased_and_nothing_is_written(
    uow: UnitOfWorkFactory,
):
    ready, worker = await _ready(uow)
    stale = _lease(ready.evolve(version=ready.version - 1), worker)
    async with uow.single() as unit:
        assert await unit.attempts.open(stale) is LeaseRefused.TASK_TAKEN
        await unit.commit()  # nothing to commit
    await _nothing_written(uow, _lease(ready, worker))


async def test_an_agent_whose_record_changed_gets_no_lease(uow: UnitOfWorkFactory):
    ready, worker = await _ready(uow)
    moved = worker.evolve(last_heartbeat=at(5), version=worker.version + 1)
    async with uow() as unit:
        assert await unit.agents.save(worker, moved)
        await unit.commit()
    async with uow.single() as unit:
        assert await unit.attempts.open(_lease(ready, worker)) is LeaseRefused.AGENT_CHANGED
        # The caller leaves without committing, as the port asks.
    await _nothing_written(uow, _lease(ready, moved))


@pytest.mark.parametrize("backend", ["postgresql"])  # elsewhere writers take turns anyway
async def test_a_lease_skips_a_task_another_transaction_holds_without_waiting(
    uow: UnitOfWorkFactory,
):
    ready, worker = await _ready(uow)
    lease = _lease(ready, worker)
    async with uow() as holder:
        assert await holder.tasks.save(ready, lease.running)
        async with uow.single() as racer:
            opening = await asyncio.wait_for(racer.attempts.open(lease), timeout=5)
            assert opening is LeaseRefused.TASK_TAKEN
        # No commit: the holder lets go of the row unchanged.
    await _nothing_written(uow, lease)
    async with uow.single() as unit:
        assert await unit.attempts.open(lease) == OpenedLease([])
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.agents.get(worker.id) == lease.booked


async def test_of_two_agents_leasing_one_task_at_once_one_gets_it(uow: UnitOfWorkFactory):
    owner = session(0)
    ready = task(1, owner.id, status=T.READY)
    ada, bob = agent("ada"), agent("bob")
    await committed(uow, owner, tasks=(ready,))
    await _stored(uow, ada, bob)

    async def lease_to(worker: Agent) -> OpenedLease | LeaseRefused:
        async with uow.single() as unit:
            opened = await unit.attempts.open(_lease(ready, worker))
            if isinstance(opened, OpenedLease):
                await unit.commit()
            return opened

    openings = await asyncio.gather(lease_to(ada), lease_to(bob))
    assert sorted(map(str, openings)) == sorted(
        map(str, [OpenedLease([]), LeaseRefused.TASK_TAKEN])
    )
    async with uow.reader() as unit:
        [attempt] = await unit.attempts.of_task(ready.id)
        holder = await unit.agents.get(attempt.agent_id)
        logged = await unit.events.for_session(owner.id, after_seq=0, limit=10)
    assert holder is not None
    assert holder.tasks_in_progress == 1
    assert [e.seq for e in logged] == [1, 2]


async def test_a_lease_reads_the_tasks_finished_dependencies_in_their_order(
    uow: UnitOfWorkFactory,
):
    owner = session(0)
    done, skipped, waiting = (
        task(1, owner.id, status=T.COMPLETED),
        task(2, owner.id, status=T.SKIPPED),
        task(3, owner.id, status=T.PENDING),
    )
    ordered = tuple(sorted((done.id, skipped.id, waiting.id)))
    ready = task(4, owner.id, status=T.READY, depends_on=ordered)
    worker = agent("ada")
    await committed(uow, owner, tasks=(done, skipped, waiting, ready))
    await _stored(uow, worker)
    async with uow.reader() as unit:
        stored = {found.id: found for found in await unit.tasks.get_many(ordered)}
    lease = _lease(ready, worker)
    async with uow.single() as unit:
        opened = await unit.attempts.open(lease)
        await unit.commit()
    finished = [stored[task_id] for task_id in ordered if task_id != waiting.id]
    assert opened == OpenedLease(finished)


async def test_a_lease_of_the_first_free_of_several_tasks_takes_one_try(
    uow: UnitOfWorkFactory, heard: list[NewEvent]
):
    """``open_first``: of the tasks a claim looked at, in its order, the first still as
    read and free is leased (its events numbered in its own session, its own finished
    dependencies read); one taken meanwhile is passed over in the same try; TASK_TAKEN
    when none is left."""
    one, two = session(0), session(1)
    done = task(1, two.id, status=T.COMPLETED)
    taken = task(2, one.id, status=T.READY)
    free = task(3, two.id, status=T.READY, depends_on=(done.id,))
    last = task(4, one.id, status=T.READY)
    worker, rival = agent("ada"), agent("bob")
    await committed(uow, one, two, tasks=(done, taken, free, last))
    await _stored(uow, worker, rival)
    async with uow.single() as unit:  # a rival took the first since the look
        assert await unit.attempts.open(_lease(taken, rival)) == OpenedLease([])
        await unit.commit()
    async with uow.reader() as unit:
        stored_done = await unit.tasks.get(done.id)
    heard.clear()
    leases = [_lease(ready, worker) for ready in (taken, free, last)]
    async with uow.single() as unit:
        opened = await unit.attempts.open_first(leases)
        await unit.commit()
    assert opened == (leases[1], OpenedLease([stored_done]))
    assert heard == leases[1].events
    async with uow.reader() as unit:
        assert await unit.tasks.get(free.id) == leases[1].running
        assert await unit.agents.get(worker.id) == leases[1].booked
        assert await unit.attempts.of_task(free.id) == [leases[1].attempt]
        logged = await unit.events.for_session(two.id, after_seq=0, limit=10)
        assert [(e.seq, e.type) for e in logged] == [
            (1, EventType.TASK_TRANSITION),
            (2, EventType.TASK_LEASED),
        ]
        assert await unit.attempts.of_task(last.id) == []
        assert await unit.tasks.get(last.id) == last
    # None left: each was taken, or read at a version no longer current.
    booked = leases[1].booked
    async with uow.single() as unit:
        stale = [_lease(ready, booked) for ready in (taken, free)]
        assert await unit.attempts.open_first(stale) is LeaseRefused.TASK_TAKEN
    with pytest.raises(ValueError, match="sessions or none"):
        async with uow.single() as unit:
            await unit.attempts.open_first(
                [_lease(last, booked), _lease(task(6, None, status=T.READY), booked)]
            )


@pytest.mark.parametrize("backend", ["postgresql"])  # elsewhere writers take turns anyway
async def test_a_lease_of_several_tasks_passes_over_one_another_transaction_holds(
    uow: UnitOfWorkFactory,
):
    owner = session(0)
    held, free = task(1, owner.id, status=T.READY), task(2, owner.id, status=T.READY)
    worker = agent("ada")
    await committed(uow, owner, tasks=(held, free))
    await _stored(uow, worker)
    leases = [_lease(held, worker), _lease(free, worker)]
    async with uow() as holder:
        assert await holder.tasks.save(held, leases[0].running)
        async with uow.single() as unit:
            opened = await asyncio.wait_for(unit.attempts.open_first(leases), timeout=5)
            await unit.commit()
        # No commit: the holder lets go of the row unchanged.
    assert opened == (leases[1], OpenedLease([]))
    async with uow.reader() as unit:
        assert await unit.tasks.get(held.id) == held
        assert await unit.tasks.get(free.id) == leases[1].running
