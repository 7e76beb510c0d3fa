"""Operator verbs (start, pause, ...) and the state each one leads to.

The transition table says which moves exist; this table says which of them an operator
may ask for by name, from which states (ARCHITECTURE.md §4: stop vs cancel, retry).
Moves that only the system makes (DEGRADED, TIMEOUT, PARTIALLY_COMPLETED, ORPHANED) have
no verb.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import CapacityExhausted
from .session import Session, illegal
from .states import RETRYABLE_STATES, SessionState

S = SessionState


class SessionAction(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    STOP = "stop"


# action -> {from state: to state}
ACTIONS: dict[SessionAction, dict[SessionState, SessionState]] = {
    SessionAction.START: {S.PENDING: S.RUNNING, S.QUEUED: S.RUNNING},
    SessionAction.PAUSE: {S.RUNNING: S.PAUSED},
    SessionAction.RESUME: {
        S.PAUSED: S.RUNNING,
        S.DEGRADED: S.RUNNING,
        S.PARTIALLY_COMPLETED: S.RUNNING,
    },
    SessionAction.COMPLETE: {
        S.RUNNING: S.COMPLETED,
        S.DEGRADED: S.COMPLETED,
        S.PARTIALLY_COMPLETED: S.COMPLETED,
    },
    SessionAction.FAIL: {
        S.PENDING: S.FAILED,
        S.QUEUED: S.FAILED,
        S.RUNNING: S.FAILED,
        S.DEGRADED: S.FAILED,
    },
    SessionAction.CANCEL: {S.PENDING: S.CANCELLED, S.QUEUED: S.CANCELLED, S.PAUSED: S.CANCELLED},
    SessionAction.STOP: {S.RUNNING: S.STOPPED, S.PAUSED: S.STOPPED, S.DEGRADED: S.STOPPED},
}

# The nominal target of each verb, named in the error when the verb does not apply.
NOMINAL_TARGET: dict[SessionAction, SessionState] = {
    SessionAction.START: S.RUNNING,
    SessionAction.PAUSE: S.PAUSED,
    SessionAction.RESUME: S.RUNNING,
    SessionAction.COMPLETE: S.COMPLETED,
    SessionAction.FAIL: S.FAILED,
    SessionAction.CANCEL: S.CANCELLED,
    SessionAction.STOP: S.STOPPED,
}


def allowed_actions(state: SessionState) -> list[str]:
    """Verbs an operator may use on a session in ``state`` (``retry`` included)."""
    verbs = [action.value for action, moves in ACTIONS.items() if state in moves]
    if state in RETRYABLE_STATES:
        verbs.append("retry")
        verbs.append(SessionAction.START.value)
    return verbs


def needs_slot(session: Session, target: SessionState) -> bool:
    """Whether the move takes a new running slot (DEGRADED already holds one)."""
    return target == S.RUNNING and not session.holds_running_slot


def resolve_action(session: Session, action: SessionAction, *, slot_free: bool) -> SessionState:
    """The state ``action`` moves ``session`` to, or the error the operator must see.

    ``start`` from PENDING queues the session when no running slot is free; every other
    move into RUNNING is refused with ``CapacityExhausted`` instead, because the table has
    no way back into QUEUED from those states.
    """
    target = ACTIONS[action].get(session.status)
    if target is None:
        error = illegal(session, NOMINAL_TARGET[action], action.value)
        error.details["allowed_actions"] = allowed_actions(session.status)
        raise error
    if needs_slot(session, target) and not slot_free:
        if session.status == S.PENDING:
            return S.QUEUED
        raise CapacityExhausted(
            f"Cannot {action.value} session {session.id}: all running slots are taken "
            "(MAX_CONCURRENT_SESSIONS); try again when a running session finishes",
            {"current_state": session.status.value, "action": action.value},
        )
    return target
