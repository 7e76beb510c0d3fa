"""Which process steps a session: an ownership lease each process takes and renews, so
that one replica at a time moves a session on, and another takes it over when the
owner's lease runs out (a SESSION_TAKEN_OVER event says so).
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import structlog

from ..domain.events import EventType, NewEvent
from .ports import Clock, UnitOfWork, UnitOfWorkFactory

# The engine's logger, as before the engine was split: log queries go by its name.
log = structlog.get_logger("industrial_orchestrator.services.session_engine")


class SessionOwnership:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def own(self, session_id: UUID, owner: str, lease_seconds: float) -> bool:
        """Take or renew this process's ownership lease of the session; whether it holds
        it. Taking over from a process whose lease ran out is an event."""
        now = self._clock()
        until = now + timedelta(seconds=lease_seconds)
        # Mostly the lease is free, this process's or another's still: one statement, no
        # transaction. Only a take-over writes an event with it.
        async with self._uow.single() as uow:
            kept = await uow.sessions.keep(session_id, owner, now, until)
            await uow.commit()
        if kept is not None:
            return kept
        async with self._uow() as uow:
            held = await uow.sessions.own(session_id, owner, now, until)
            if held is not None and held != owner and await _not_over(uow, session_id):
                await uow.events.append(
                    [
                        NewEvent(
                            EventType.SESSION_TAKEN_OVER,
                            now,
                            session_id,
                            {"from": held, "to": owner, "reason": "its owner's lease expired"},
                        )
                    ]
                )
                log.warning("session_taken_over", session_id=str(session_id), previous=held)
            await uow.commit()
        return held is not None

    async def disown(self, owner: str, session_id: UUID | None = None) -> None:
        """Let go of the session's lease (of every session ``owner`` holds, without one)."""
        async with self._uow.single() as uow:
            await uow.sessions.disown(owner, session_id)
            await uow.commit()

    async def forget_owners(self) -> None:
        """After a restart of the only process a database may have (SQLite): every
        session is this process's to resume at once."""
        async with self._uow.single() as uow:
            await uow.sessions.forget_owners()
            await uow.commit()


async def _not_over(uow: UnitOfWork, session_id: UUID) -> bool:
    """A session that ended is no longer renewed by its owner, alive or not: whoever
    steps it afterwards (to close what it left open) takes over nothing worth an event.
    Read only when a lease changed hands."""
    session = await uow.sessions.get(session_id)
    return session is not None and not session.is_terminal
