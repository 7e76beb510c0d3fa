"""The session service's verbs (``services/sessions.py``) on the in-memory unit of work:
running slots and the queue, idempotent creation, refused verbs that record nothing, and
one retry per session. The HTTP tests (tests/api) keep what HTTP adds."""

from __future__ import annotations

import pytest

from industrial_orchestrator.domain.errors import AlreadyRetried, Conflict, IllegalTransition
from industrial_orchestrator.domain.sessions.actions import SessionAction
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.sessions import NewSession, SessionService
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory

pytestmark = pytest.mark.fast

S = SessionState


def _service(max_running: int = 10) -> SessionService:
    return SessionService(
        MemoryUnitOfWorkFactory(), max_running=max_running, checkpoint_retention=100
    )


async def test_starts_beyond_the_running_slots_queue_and_a_freed_slot_goes_to_the_oldest():
    sessions = _service(max_running=1)
    first = (await sessions.create(NewSession("a", "p", auto_start=True))).session
    second = (await sessions.create(NewSession("b", "p", auto_start=True))).session
    third = (await sessions.create(NewSession("c", "p", auto_start=True))).session
    assert [first.status, second.status, third.status] == [S.RUNNING, S.QUEUED, S.QUEUED]
    await sessions.act(first.id, SessionAction.STOP)
    assert (await sessions.get(second.id)).status == S.RUNNING
    assert (await sessions.get(third.id)).status == S.QUEUED
    assert await sessions.count_running() == 1


async def test_the_same_idempotency_key_gives_the_first_session_and_refuses_another_body():
    sessions = _service()
    draft = NewSession("a", "p")
    first = await sessions.create(draft, idempotency_key="k-1")
    again = await sessions.create(draft, idempotency_key="k-1")
    assert (again.session.id, again.created) == (first.session.id, False)
    with pytest.raises(Conflict):
        await sessions.create(NewSession("a", "another prompt"), idempotency_key="k-1")
    assert (await sessions.stats()).total == 1


async def test_a_refused_verb_records_nothing():
    sessions = _service()
    session = (await sessions.create(NewSession("a", "p"))).session
    with pytest.raises(IllegalTransition):
        await sessions.act(session.id, SessionAction.PAUSE)  # PENDING cannot pause
    assert await sessions.get(session.id) == session
    assert [t.to_state for t in await sessions.history(session.id)] == [S.PENDING]


async def test_a_failed_session_is_retried_once_into_a_new_attempt():
    sessions = _service()
    session = (await sessions.create(NewSession("a", "p", auto_start=True))).session
    await sessions.act(session.id, SessionAction.FAIL, reason="it broke")
    retry = await sessions.retry(session.id)
    assert (retry.retry_of, retry.attempt, retry.status) == (session.id, 2, S.PENDING)
    assert (await sessions.get(session.id)).status == S.FAILED  # the old one unchanged
    assert await sessions.retried_as(session.id) == retry.id
    with pytest.raises(AlreadyRetried):
        await sessions.retry(session.id)
