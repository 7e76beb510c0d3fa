"""The runtime's timers (``services/session_schedule.py``) on the in-memory unit of work
and a fake clock: no database, no waiting on the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.sessions.session import (
    Actor,
    Session,
    SessionPhase,
    creation_record,
    transition,
)
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.session_schedule import SessionSchedule
from industrial_orchestrator.testing.clock import FakeClock
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory

pytestmark = pytest.mark.fast

T0 = datetime(2026, 12, 6, tzinfo=UTC)


async def _running(uow: MemoryUnitOfWorkFactory, clock: FakeClock, limit: int) -> Session:
    """A session started at the clock's time, with a time limit of ``limit`` seconds."""
    new = Session(
        id=uuid4(),
        title="s",
        initial_prompt="p",
        priority=Priority.MEDIUM,
        status=SessionState.PENDING,
        created_at=clock(),
        updated_at=clock(),
        options=SessionOptions(timeout_seconds=limit),
    )
    started, record = transition(new, SessionState.RUNNING, now=clock(), actor=Actor.OPERATOR)
    started = started.evolve(phase=SessionPhase.EXECUTING, started_at=clock())
    async with uow() as unit:
        await unit.sessions.add(started, None, None)
        await unit.sessions.add_transition(creation_record(new, Actor.OPERATOR))
        await unit.sessions.add_transition(record)
        await unit.commit()
    return started


def _schedule(uow: MemoryUnitOfWorkFactory, clock: FakeClock) -> SessionSchedule:
    return SessionSchedule(
        uow, clock=clock, session_timeout_seconds=3600, checkpoint_interval_seconds=300
    )


async def test_the_next_timer_is_the_sooner_of_the_time_limit_and_the_periodic_look():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    schedule = _schedule(uow, clock)
    short = await _running(uow, clock, limit=120)
    long = await _running(uow, clock, limit=7200)
    clock.advance(30)
    assert await schedule.seconds_to_due(short.id) == 90  # its time limit
    assert await schedule.seconds_to_due(long.id) == 270  # its first periodic checkpoint


async def test_a_look_that_found_nothing_moves_the_periodic_timer_on():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    schedule = _schedule(uow, clock)
    session = await _running(uow, clock, limit=7200)
    clock.advance(300)
    assert await schedule.seconds_to_due(session.id) == 0
    async with uow() as unit:
        await unit.sessions.checkpoint_checked(session.id, clock())
        await unit.commit()
    assert await schedule.seconds_to_due(session.id) == 300


async def test_a_timer_is_taken_once_and_only_by_the_sessions_owner():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    schedule = _schedule(uow, clock)
    session = await _running(uow, clock, limit=60)
    async with uow() as unit:
        lease = clock() + timedelta(seconds=60)
        assert await unit.sessions.own(session.id, "a", clock(), lease) == "a"  # held
        await unit.commit()
    assert await schedule.set_timer(session.id) == 60
    assert await schedule.take_due("a") == []  # not due yet
    clock.advance(61)
    assert await schedule.take_due("b") == []  # not b's
    assert await schedule.take_due("a") == [session.id]
    assert await schedule.take_due("a") == []  # taken once


async def test_a_session_that_is_not_running_has_no_timer():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    schedule = _schedule(uow, clock)
    session = await _running(uow, clock, limit=60)
    paused, record = transition(session, SessionState.PAUSED, now=clock(), actor=Actor.OPERATOR)
    async with uow() as unit:
        assert await unit.sessions.save(session, paused) is not None
        await unit.sessions.add_transition(record)
        await unit.commit()
    assert await schedule.seconds_to_due(session.id) is None
    assert await schedule.set_timer(session.id) is None
