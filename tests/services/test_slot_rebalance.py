"""The running-slot rules under interleavings the HTTP tests cannot force."""

from __future__ import annotations

import pytest

from industrial_orchestrator.domain.sessions.actions import SessionAction
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.sessions import NewSession
from industrial_orchestrator.storage.session_repository import SqlSessionRepository


@pytest.mark.settings(max_concurrent_sessions=1)
async def test_a_start_that_missed_a_slot_just_released_promotes_itself(service, monkeypatch):
    """A start looks for a free slot while a finishing session's release has not
    committed yet (its row is locked, so the start passes it by), so it queues; the
    finisher already looked at the (empty) queue. The queued session must not wait for
    the next release: it promotes itself after its own commit."""
    holder = (await service.create(NewSession("a", "p", auto_start=True))).session
    await service.act(holder.id, SessionAction.COMPLETE)
    waiting = (await service.create(NewSession("b", "p"))).session

    real_take = SqlSessionRepository.take_running_slot
    tries: list[bool] = []

    async def miss_the_first_time(
        self: SqlSessionRepository, session_id, capacity, *, new=False
    ) -> bool:
        if not tries:
            tries.append(False)
            return False
        tries.append(await real_take(self, session_id, capacity, new=new))
        return tries[-1]

    monkeypatch.setattr(SqlSessionRepository, "take_running_slot", miss_the_first_time)
    answered = await service.act(waiting.id, SessionAction.START)

    assert answered.status == SessionState.QUEUED
    assert (await service.get(waiting.id)).status == SessionState.RUNNING
    assert tries == [False, True], "the missed slot must be the only reason it queued"


@pytest.mark.settings(max_concurrent_sessions=1)
async def test_a_release_promotes_the_oldest_of_equal_priority(service):
    holder = (await service.create(NewSession("a", "p", auto_start=True))).session
    first = (await service.create(NewSession("b", "p", auto_start=True))).session
    second = (await service.create(NewSession("c", "p", auto_start=True))).session
    assert first.status == second.status == SessionState.QUEUED
    await service.act(holder.id, SessionAction.STOP)
    assert (await service.get(first.id)).status == SessionState.RUNNING
    assert (await service.get(second.id)).status == SessionState.QUEUED


@pytest.mark.settings(max_concurrent_sessions=1)
async def test_a_fresh_start_never_takes_a_freed_slot_ahead_of_the_queue(service, monkeypatch):
    """Between a finishing session's commit and its promotion of the queue, a slot is
    free; a session started in that instant must queue behind the waiting ones, so the
    queue (priority, then age) decides who runs."""
    from industrial_orchestrator.domain.priorities import Priority
    from industrial_orchestrator.services.sessions import SessionService

    holder = (await service.create(NewSession("a", "p", auto_start=True))).session
    urgent = (
        await service.create(NewSession("b", "p", priority=Priority.CRITICAL, auto_start=True))
    ).session
    latecomer = (await service.create(NewSession("c", "p", priority=Priority.LOW))).session
    assert urgent.status == SessionState.QUEUED

    async def not_yet(self: SessionService, before: object, after: object) -> None:
        return None

    monkeypatch.setattr(SessionService, "_rebalance", not_yet)
    await service.act(holder.id, SessionAction.COMPLETE)  # its promotion is still to come
    started = await service.start(latecomer.id)
    assert started.session.status == SessionState.QUEUED
    monkeypatch.undo()
    await service.promote_queued()
    assert (await service.get(urgent.id)).status == SessionState.RUNNING
    assert (await service.get(latecomer.id)).status == SessionState.QUEUED
