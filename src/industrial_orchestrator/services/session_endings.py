"""The engine ending a session on its own: out of time or over budget (looked at before
each step), or its plan stuck. The rules are ``domain/sessions/endings.py``'s; this writes
the move.
"""

from __future__ import annotations

from ..domain.errors import Conflict
from ..domain.sessions.endings import SessionLimits, stuck_ending
from ..domain.sessions.progress import Progress
from ..domain.sessions.session import Actor, Session
from .ports import Clock, UnitOfWorkFactory
from .sessions import SessionService


class SessionEndings:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sessions: SessionService,
        limits: SessionLimits,
        *,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._sessions = sessions
        self._limits = limits
        self._clock = clock

    def surely_within_time(self, session: Session, ran_at_most: float | None) -> bool:
        """Whether the session is within its time limit on the bound alone
        (``domain.sessions.session.running_at_most``)."""
        return self._limits.within_time(session.options, ran_at_most)

    async def check_limits(self, session: Session, ran: float) -> bool:
        """End the session when it ran out of time (``ran``: seconds spent running) or
        budget; whether it did."""
        ending = self._limits.ending(
            session.status,
            session.options,
            ran_seconds=ran,
            tokens_used=session.tokens_used,
            cost_usd=session.cost_usd,
        )
        if ending is None:
            return False
        try:
            await self._sessions.move(
                session.id, ending.state, reason=ending.reason, actor=Actor.SYSTEM
            )
        except Conflict:
            return True  # someone moved it first; the next round sees the new state
        return True

    async def give_up(self, session: Session, progress: Progress) -> None:
        """End a session whose plan is stuck: PARTIALLY_COMPLETED or FAILED."""
        ending = stuck_ending(progress)
        await self._sessions.move(
            session.id, ending.state, reason=ending.reason, actor=Actor.SYSTEM
        )
