"""The running-slot rules under interleavings the HTTP tests cannot force."""

from __future__ import annotations

import pytest

from industrial_orchestrator.domain.session_actions import SessionAction
from industrial_orchestrator.domain.session_states import SessionState
from industrial_orchestrator.services.sessions import NewSession
from industrial_orchestrator.storage.session_repository import SqlSessionRepository


@pytest.mark.settings(max_concurrent_sessions=1)
async def test_a_start_that_counted_a_slot_just_released_promotes_itself(service, monkeypatch):
    """A start counts the slots while a finishing session has not committed yet, so it
    queues; the finisher already looked at the (empty) queue. The queued session must
    not wait for the next release: it promotes itself after its own commit."""
    holder = (await service.create(NewSession("a", "p", auto_start=True))).session
    await service.act(holder.id, SessionAction.COMPLETE)
    waiting = (await service.create(NewSession("b", "p"))).session

    real_count = SqlSessionRepository.count_running
    seen: list[int] = []

    async def count_as_before_the_release(self: SqlSessionRepository) -> int:
        seen.append(await real_count(self))
        return 1 if len(seen) == 1 else seen[-1]

    monkeypatch.setattr(SqlSessionRepository, "count_running", count_as_before_the_release)
    answered = await service.act(waiting.id, SessionAction.START)

    assert answered.status == SessionState.QUEUED
    assert (await service.get(waiting.id)).status == SessionState.RUNNING
    assert seen[0] == 0, "the stale count must be the only reason it queued"


@pytest.mark.settings(max_concurrent_sessions=1)
async def test_a_release_promotes_the_oldest_of_equal_priority(service):
    holder = (await service.create(NewSession("a", "p", auto_start=True))).session
    first = (await service.create(NewSession("b", "p", auto_start=True))).session
    second = (await service.create(NewSession("c", "p", auto_start=True))).session
    assert first.status == second.status == SessionState.QUEUED
    await service.act(holder.id, SessionAction.STOP)
    assert (await service.get(first.id)).status == SessionState.RUNNING
    assert (await service.get(second.id)).status == SessionState.QUEUED
