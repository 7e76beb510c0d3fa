"""The engine ending a session on its own (``services/session_endings.py``) on the
in-memory unit of work: the rules are the domain's (``domain/sessions/endings.py``, tested
case by case there); this checks the move each one writes, and its reason."""

from __future__ import annotations

from uuid import uuid4

import pytest

from industrial_orchestrator.domain.errors import IllegalTransition
from industrial_orchestrator.domain.sessions.actions import SessionAction
from industrial_orchestrator.domain.sessions.endings import SessionLimits
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.sessions.progress import progress_of
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.task import TaskStatus, TaskType, new_task
from industrial_orchestrator.services.session_endings import SessionEndings
from industrial_orchestrator.services.sessions import NewSession, SessionService, utc_now
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory

pytestmark = pytest.mark.fast

S = SessionState


def _parts() -> tuple[SessionService, SessionEndings]:
    uow = MemoryUnitOfWorkFactory()
    sessions = SessionService(uow, max_running=10, checkpoint_retention=100)
    return sessions, SessionEndings(uow, sessions, SessionLimits(3600), clock=utc_now)


async def _running(sessions: SessionService, options: SessionOptions) -> Session:
    draft = NewSession("s", "p", auto_start=True, options=options)
    return (await sessions.create(draft)).session


@pytest.mark.parametrize(
    ("options", "ran", "ending", "why"),
    [
        (SessionOptions(timeout_seconds=60), 61.0, S.TIMEOUT, "ran longer than 60 s"),
        # The server's default limit, for a session that sets none.
        (SessionOptions(), 3601.0, S.TIMEOUT, "ran longer than 3600 s"),
        (SessionOptions(timeout_seconds=60), 59.0, None, None),
    ],
)
async def test_a_session_past_its_time_limit_ends_timeout(
    options: SessionOptions, ran: float, ending: SessionState | None, why: str | None
):
    sessions, endings = _parts()
    session = await _running(sessions, options)
    assert await endings.check_limits(session, ran) is (ending is not None)
    after = await sessions.get(session.id)
    assert after.status == (ending or S.RUNNING)
    assert after.status_reason == why


async def test_a_session_over_its_budget_fails_saying_so():
    sessions, endings = _parts()
    session = await _running(sessions, SessionOptions(max_tokens=100))
    spent = session.evolve(tokens_used=150)
    assert await endings.check_limits(spent, 1.0)
    after = await sessions.get(session.id)
    assert after.status == S.FAILED
    assert after.status_reason is not None
    assert after.status_reason.startswith("budget_exceeded: 150 tokens used, budget 100")


async def test_a_stuck_plan_ends_partially_completed_when_some_work_got_done():
    sessions, endings = _parts()
    session = await _running(sessions, SessionOptions())
    done, failed = (
        new_task(
            id=uuid4(),
            title=title,
            description="d",
            task_type=TaskType.CODE_GENERATION,
            required_capabilities=["python"],
            estimated_effort=1.0,
            now=session.created_at,
            session_id=session.id,
        ).evolve(status=status, result_summary=summary)
        for title, status, summary in (
            ("built", TaskStatus.COMPLETED, "ok"),
            ("tested", TaskStatus.FAILED, "the provider said no"),
        )
    )
    await endings.give_up(session, progress_of([done, failed]))
    after = await sessions.get(session.id)
    assert after.status == S.PARTIALLY_COMPLETED
    assert after.status_reason is not None
    assert "'tested' (FAILED) failed; the provider said no" in after.status_reason
    with pytest.raises(IllegalTransition):  # ended: no verb moves it any more
        await sessions.act(after.id, SessionAction.PAUSE)
