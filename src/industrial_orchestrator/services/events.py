"""Reading the event log, and appending log lines to a session's live terminal."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import structlog

from ..domain.errors import NotFound
from ..domain.events import Event, EventType, LogStream, log_lines
from .ports import Clock, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.events")


class EventLog:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def for_session(
        self,
        session_id: UUID,
        *,
        after_seq: int = 0,
        limit: int = 100,
        types: Sequence[EventType] = (),
    ) -> list[Event]:
        """Events of one session with ``seq > after_seq``, oldest first."""
        async with self._uow.reader() as uow:
            if await uow.sessions.get(session_id) is None:
                raise _missing(session_id)
            return await uow.events.for_session(
                session_id, after_seq=after_seq, limit=limit, types=types
            )

    async def append_log(self, session_id: UUID, stream: LogStream, text: str) -> int:
        """Append ``text`` to the session's terminal (split into chunks if long);
        returns how many events it took."""
        new = log_lines(session_id, stream, text, self._clock())
        async with self._uow() as uow:
            if await uow.sessions.get(session_id) is None:
                raise _missing(session_id)
            await uow.events.append(new)
            await uow.commit()
        return len(new)

    async def after(
        self,
        after_id: int,
        *,
        limit: int = 100,
        types: Sequence[EventType] = (),
        sessions_only: bool = False,
        wait_for_writers: bool = True,
    ) -> list[Event]:
        """Events of the whole log with ``id > after_id``, in id order: an event that
        commits later never has a smaller id than one returned. By default everything
        committed before the call is among them (``EventRepository.after``)."""
        async with self._uow.reader() as uow:
            return await uow.events.after(
                after_id,
                limit=limit,
                types=types,
                sessions_only=sessions_only,
                wait_for_writers=wait_for_writers,
            )

    async def latest(self, *, limit: int = 20, types: Sequence[EventType] = ()) -> list[Event]:
        """The newest events of the whole log (of ``types`` if given), newest first."""
        async with self._uow.reader() as uow:
            return await uow.events.latest(limit=limit, types=types)

    async def last_id(self, *, wait_for_writers: bool = True) -> int:
        """Where a reader of ``after`` starts to see only what commits from now on (every
        id up to it is settled); 0 when the log is empty."""
        async with self._uow.reader() as uow:
            return await uow.events.last_id(wait_for_writers=wait_for_writers)

    async def exists(self, session_id: UUID) -> bool:
        async with self._uow.reader() as uow:
            return await uow.sessions.get(session_id) is not None


def _missing(session_id: UUID) -> NotFound:
    return NotFound(f"Session {session_id} does not exist", {"session_id": str(session_id)})
