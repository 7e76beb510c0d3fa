"""The writes and log lines of one session transition, shared by every use case that moves one.

A transition is three writes inside the caller's transaction (the guarded row update, the
history row, the event) and one log line after the commit; keeping them here gives the
verbs, the queue's promotion, retries and forks one copy of each.
"""

from __future__ import annotations

from uuid import UUID

import structlog

from ..domain import events
from ..domain.errors import NotFound, VersionConflict
from ..domain.sessions.session import Session, Transition
from ..domain.sessions.states import SessionState
from .ports import UnitOfWork

# The logger the session use cases have always logged under (operators filter on it).
log = structlog.get_logger("industrial_orchestrator.services.session")


async def record_transition(
    uow: UnitOfWork, before: Session, after: Session, record: Transition
) -> None:
    """The writes of a transition, inside the caller's transaction: the guarded row
    update, the history row and the event (so an event exists if and only if the
    transition commits), and the running slot given back when the session leaves
    RUNNING and DEGRADED (the verb that moved it in took one: ``RunningSlots``)."""
    last_event_seq = await uow.sessions.save(before, after, reserve_events=1)
    if last_event_seq is None:
        raise stale(before, before.version, concurrent=True)
    if before.holds_running_slot and not after.holds_running_slot:
        await uow.sessions.give_back_running_slot(after.id)
    await uow.sessions.add_transition(record)
    await uow.events.append(
        [events.session_transition(record, after)], reserved={after.id: last_event_seq}
    )


async def load(uow: UnitOfWork, session_id: UUID, expected_version: int | None) -> Session:
    """The session, at ``expected_version`` when one is given (``VersionConflict`` if not)."""
    session = found(await uow.sessions.get(session_id), session_id)
    if expected_version is not None and session.version != expected_version:
        raise stale(session, expected_version)
    return session


def log_transition(record: Transition | None) -> None:
    """Log a committed transition under its event name (``session_started``, ...)."""
    if record is None:
        return
    log.info(
        _event_name(record),
        session_id=str(record.session_id),
        from_state=record.from_state.value if record.from_state else None,
        to_state=record.to_state.value,
        actor=record.actor.value,
        reason=record.reason,
    )


def _event_name(record: Transition) -> str:
    if record.to_state == SessionState.RUNNING:
        fresh = record.from_state in (SessionState.PENDING, SessionState.QUEUED)
        return "session_started" if fresh else "session_resumed"
    return f"session_{record.to_state.value.lower()}"


def found(session: Session | None, session_id: UUID) -> Session:
    """``session``, or ``NotFound`` when there is none."""
    if session is None:
        raise NotFound(f"Session {session_id} does not exist", {"session_id": str(session_id)})
    return session


def stale(session: Session, expected_version: int, *, concurrent: bool = False) -> VersionConflict:
    """The conflict to raise when ``session`` is not at the version the caller read."""
    why = (
        "was changed by a concurrent request"
        if concurrent
        else f"is at version {session.version}, not {expected_version}"
    )
    return VersionConflict(
        f"Session {session.id} {why}; reload it and try again",
        {
            "session_id": str(session.id),
            "expected_version": expected_version,
            **({} if concurrent else {"current_version": session.version}),
            "current_state": session.status.value,
        },
    )
