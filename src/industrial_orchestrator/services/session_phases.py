"""A running session's phase change (PLANNING -> EXECUTING -> REVIEWING, and back to
EXECUTING for another round of work), written with its SESSION_PHASE event inside the
caller's transaction; and what the engine's steps that change it (planning, the
verification round) work with.

Phases are not states: a session stays RUNNING (or DEGRADED) through all of them; its
phase says what the engine does with it next.
"""

from __future__ import annotations

from ..domain.errors import Conflict
from ..domain.events import EventType, NewEvent
from ..domain.sessions.session import Session
from .ports import Clock, UnitOfWork, UnitOfWorkFactory
from .session_checkpoints import SessionCheckpoints
from .sessions import SessionService


class PhaseSteps:
    """The base of the engine's parts that move a session from phase to phase: they
    write through ``uow`` and ``sessions`` and take a checkpoint at each move."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sessions: SessionService,
        checkpoints: SessionCheckpoints,
        *,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._sessions = sessions
        self._checkpoints = checkpoints
        self._clock = clock


async def save_phase(uow: UnitOfWork, before: Session, after: Session, why: str) -> None:
    """Save ``after`` over ``before`` (guarded by its version) and record the change;
    ``Conflict`` when the session changed meanwhile."""
    if await uow.sessions.save(before, after) is None:
        raise Conflict(
            f"Session {before.id} changed meanwhile; the engine will look again",
            {"session_id": str(before.id)},
        )
    await uow.events.append(
        [
            NewEvent(
                EventType.SESSION_PHASE,
                after.updated_at,
                after.id,
                {
                    "from": before.phase.value if before.phase else None,
                    "to": after.phase.value if after.phase else None,
                    "reason": why,
                    "review_round": after.review_round,
                },
            )
        ]
    )
