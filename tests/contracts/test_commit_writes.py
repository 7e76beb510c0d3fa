"""Writes kept for the commit (``save_at_commit``, ``close_at_commit``,
``delete_temporary_at_commit``): written with the transaction's events when their guards
hold; a guard that does not hold raises the caller's error and keeps nothing of the
transaction. And the one read a result makes (``AttemptRepository.in_session``)."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from industrial_orchestrator.domain.agents.agent import Agent
from industrial_orchestrator.domain.contexts.context import Context, ContextScope, new_context
from industrial_orchestrator.domain.events import NewEvent
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.tasks import events as task_events
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome, TaskAttempt
from industrial_orchestrator.domain.tasks.lease_rules import (
    agent_after_attempt,
    agent_with_lease,
    lease_task,
)
from industrial_orchestrator.domain.tasks.task import Task, task_transition
from industrial_orchestrator.domain.tasks.task import TaskStatus as T
from industrial_orchestrator.services.ports import NewLease, UnitOfWork, UnitOfWorkFactory

from .builders import agent, at, committed, line, session, task


class Refused(Exception):
    """The error a case hands its writes."""


async def _leased(uow: UnitOfWorkFactory) -> tuple[Session, Task, Agent, TaskAttempt]:
    """A session with a RUNNING task leased to a stored agent; returns them as stored."""
    owner = session(0)
    ready = task(1, owner.id, status=T.READY)
    worker = agent("ada")
    await committed(uow, owner, tasks=(ready,))
    async with uow() as unit:
        await unit.agents.add(worker)
        await unit.commit()
    running, attempt = lease_task(ready, worker, now=at(10), lease_seconds=60)
    booked = agent_with_lease(worker, now=at(10))
    async with uow.single() as unit:
        leased = [
            task_events.task_transition(ready, running),
            task_events.task_leased(running, attempt),
        ]
        await unit.attempts.open(NewLease(ready, running, worker, booked, attempt, leased))
        await unit.commit()
    return owner, running, booked, attempt


def _ended(attempt: TaskAttempt) -> TaskAttempt:
    return attempt.evolve(outcome=AttemptOutcome.COMPLETED, finished_at=at(20))


async def _temporary(uow: UnitOfWorkFactory, owner: Task) -> None:
    note = new_context(
        id=uuid4(),
        scope=ContextScope.TEMPORARY,
        owner_id=owner.id,
        name="scratch",
        data={"scratch": 1},
        now=at(11),
    )
    async with uow() as unit:
        await unit.contexts.add(note)
        await unit.commit()


async def _temporaries(unit: UnitOfWork, owner_id: UUID) -> list[Context]:
    return await unit.contexts.find(scope=ContextScope.TEMPORARY, owner_ids=[owner_id])


async def test_writes_kept_for_the_commit_are_written_with_its_events(
    uow: UnitOfWorkFactory, heard: list[NewEvent]
):
    owner, running, booked, attempt = await _leased(uow)
    await _temporary(uow, running)
    async with uow() as unit:  # the session's first number is taken already
        await unit.events.append([line(owner.id, "before")])
        await unit.commit()
    done = task_transition(running, T.COMPLETED, now=at(20), summary="ok")
    settled = agent_after_attempt(booked, AttemptOutcome.COMPLETED)
    async with uow() as unit:
        await unit.attempts.close_at_commit(_ended(attempt), stale=Refused("attempt"))
        await unit.tasks.save_at_commit(running, done, stale=Refused("task"))
        await unit.agents.save_at_commit(booked, settled, stale=Refused("agent"))
        await unit.contexts.delete_temporary_at_commit(running.id)
        await unit.events.append([line(owner.id, "after")])
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.tasks.get(running.id) == done
        assert await unit.agents.get(booked.id) == settled
        assert await unit.attempts.of_task(running.id) == [_ended(attempt)]
        assert await _temporaries(unit, running.id) == []
        logged = await unit.events.for_session(owner.id, after_seq=0, limit=10)
    # The lease's two events, then these.
    assert [(e.seq, e.payload.get("text")) for e in logged][2:] == [(3, "before"), (4, "after")]
    assert [e.payload["text"] for e in heard[-1:]] == ["after"]


async def test_writes_kept_for_a_commit_without_events_are_written(uow: UnitOfWorkFactory):
    _, running, booked, attempt = await _leased(uow)
    done = task_transition(running, T.COMPLETED, now=at(20), summary="ok")
    async with uow() as unit:
        await unit.attempts.close_at_commit(_ended(attempt), stale=Refused("attempt"))
        await unit.tasks.save_at_commit(running, done, stale=Refused("task"))
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.tasks.get(running.id) == done
        assert await unit.attempts.of_task(running.id) == [_ended(attempt)]
        assert await unit.agents.get(booked.id) == booked


@pytest.mark.parametrize("with_events", [True, False])
async def test_a_write_whose_row_moved_on_raises_its_error_and_keeps_nothing(
    uow: UnitOfWorkFactory, heard: list[NewEvent], with_events: bool
):
    owner, running, booked, attempt = await _leased(uow)
    await _temporary(uow, running)
    # Another writer ends the attempt and requeues the task meanwhile.
    async with uow() as unit:
        assert await unit.attempts.close(attempt.evolve(outcome=AttemptOutcome.EXPIRED))
        await unit.commit()
    heard.clear()
    done = task_transition(running, T.COMPLETED, now=at(20), summary="ok")
    settled = agent_after_attempt(booked, AttemptOutcome.COMPLETED)
    refused = Refused("attempt")

    async def record() -> None:
        async with uow() as unit:
            await unit.agents.save_at_commit(booked, settled, stale=Refused("agent"))
            await unit.tasks.save_at_commit(running, done, stale=Refused("task"))
            await unit.contexts.delete_temporary_at_commit(running.id)
            await unit.attempts.close_at_commit(_ended(attempt), stale=refused)
            if with_events:
                await unit.events.append([line(owner.id, "after")])
            await unit.commit()

    with pytest.raises(Refused) as raised:
        await record()
    assert raised.value is refused
    async with uow.reader() as unit:
        assert await unit.tasks.get(running.id) == running
        assert await unit.agents.get(booked.id) == booked
        assert len(await _temporaries(unit, running.id)) == 1
        assert len(await unit.events.for_session(owner.id, after_seq=0, limit=10)) == 2
    assert heard == []


async def test_a_guard_that_holds_no_longer_is_refused_for_an_agent_too(
    uow: UnitOfWorkFactory,
):
    _, _, booked, _ = await _leased(uow)
    moved = booked.evolve(version=booked.version + 1, current_load=0.5)
    async with uow() as unit:
        assert await unit.agents.save(booked, moved)
        await unit.commit()
    settled = agent_after_attempt(booked, AttemptOutcome.COMPLETED)

    async def book() -> None:
        async with uow() as unit:
            await unit.agents.save_at_commit(booked, settled, stale=Refused("agent"))
            await unit.commit()

    with pytest.raises(Refused, match="agent"):
        await book()
    async with uow.reader() as unit:
        assert await unit.agents.get(booked.id) == moved


async def test_in_session_reads_the_session_its_tasks_and_one_tasks_attempt(
    uow: UnitOfWorkFactory,
):
    owner, running, _, attempt = await _leased(uow)
    waiting = task(2, owner.id)
    async with uow() as unit:
        await unit.tasks.add(waiting)
        await unit.commit()
    async with uow.reader() as unit:
        found, tasks, current = await unit.attempts.in_session(owner.id, running.id)
        assert found == owner
        assert tasks == [running, waiting]
        assert current == attempt
        assert (await unit.attempts.in_session(owner.id, waiting.id))[2] is None
        other = await unit.attempts.in_session(owner.id, task(3, None).id)
        assert other == (owner, [running, waiting], None)
        assert await unit.attempts.in_session(session(9).id, running.id) == (None, [], None)
