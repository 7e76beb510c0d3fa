"""Which process steps a session (``services/session_ownership.py``) on the in-memory
unit of work and a fake clock: one owner at a time, a lease that runs out is taken over
(and the log says so), a lease given up is free at once."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from industrial_orchestrator.domain.events import EventType
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.session_ownership import SessionOwnership
from industrial_orchestrator.testing.clock import FakeClock
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory

pytestmark = pytest.mark.fast

T0 = datetime(2026, 12, 6, tzinfo=UTC)


async def _session(
    uow: MemoryUnitOfWorkFactory, status: SessionState = SessionState.RUNNING
) -> UUID:
    session = Session(uuid4(), "s", "p", Priority.LOW, status, T0, T0)
    async with uow() as unit:
        await unit.sessions.add(session, None, None)
        await unit.commit()
    return session.id


async def _taken_over(uow: MemoryUnitOfWorkFactory, session_id: UUID) -> list[dict[str, str]]:
    async with uow.reader() as unit:
        events = await unit.events.for_session(session_id, after_seq=0, limit=100)
    return [dict(e.payload) for e in events if e.type == EventType.SESSION_TAKEN_OVER]


async def test_one_owner_at_a_time_until_its_lease_runs_out():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    ownership = SessionOwnership(uow, clock=clock)
    session_id = await _session(uow)
    assert await ownership.own(session_id, "a", lease_seconds=10)
    assert not await ownership.own(session_id, "b", lease_seconds=10)
    clock.advance(5)
    assert await ownership.own(session_id, "a", lease_seconds=10)  # renewed to 15 s
    clock.advance(9)
    assert not await ownership.own(session_id, "b", lease_seconds=10)
    assert await _taken_over(uow, session_id) == []
    clock.advance(2)  # 16 s: a's lease ran out
    assert await ownership.own(session_id, "b", lease_seconds=10)
    assert not await ownership.own(session_id, "a", lease_seconds=10)
    [taken] = await _taken_over(uow, session_id)
    assert (taken["from"], taken["to"]) == ("a", "b")


async def test_a_session_that_ended_changes_hands_without_a_takeover():
    """Its owner stopped renewing it when it ended, alive or not: another process that
    steps it later (to close what it left open) takes it without an event."""
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    ownership = SessionOwnership(uow, clock=clock)
    ended = await _session(uow, SessionState.COMPLETED)
    assert await ownership.own(ended, "a", lease_seconds=10)
    clock.advance(11)
    assert await ownership.own(ended, "b", lease_seconds=10)
    assert await _taken_over(uow, ended) == []


async def test_a_lease_given_up_is_free_at_once_and_takes_no_event():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    ownership = SessionOwnership(uow, clock=clock)
    first, second = await _session(uow), await _session(uow)
    assert await ownership.own(first, "a", lease_seconds=60)
    assert await ownership.own(second, "a", lease_seconds=60)
    await ownership.disown("a", first)
    assert await ownership.own(first, "b", lease_seconds=60)
    assert not await ownership.own(second, "b", lease_seconds=60)  # still a's
    await ownership.disown("a")  # every one it holds
    assert await ownership.own(second, "b", lease_seconds=60)
    assert await _taken_over(uow, first) == [] == await _taken_over(uow, second)


async def test_after_a_restart_of_the_only_process_every_session_is_free():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    ownership = SessionOwnership(uow, clock=clock)
    session_id = await _session(uow)
    assert await ownership.own(session_id, "before", lease_seconds=3600)
    await ownership.forget_owners()
    assert await ownership.own(session_id, "after", lease_seconds=60)
