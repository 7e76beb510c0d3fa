"""The event log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol
from uuid import UUID

from ...domain.events import Event, EventType, NewEvent


class EventRepository(Protocol):
    async def append(
        self, new: Sequence[NewEvent], *, reserved: Mapping[UUID, int] | None = None
    ) -> None:
        """Store events in order (written when the unit of work commits), numbering
        session events consecutively per session. ``reserved`` maps a session to the
        last of the numbers already reserved for its events in ``new`` (by
        ``SessionRepository.save``)."""

    async def for_session(
        self,
        session_id: UUID,
        *,
        after_seq: int,
        limit: int,
        types: Sequence[EventType] = (),
    ) -> list[Event]: ...

    async def after(
        self,
        after_id: int,
        *,
        limit: int,
        types: Sequence[EventType] = (),
        sessions_only: bool = False,
        wait_for_writers: bool = False,
    ) -> list[Event]:
        """The whole log after a global id, in id order, up to where every id is settled:
        an id not yet committed holds back the larger ones, so ``id > last seen`` never
        skips one. ``wait_for_writers``: wait for the transactions writing events below
        the last id given out, so that everything committed before the call is read (the
        others are held back at most until the writers commit)."""

    async def latest(self, *, limit: int, types: Sequence[EventType] = ()) -> list[Event]:
        """The newest events of the log (of ``types`` if given), newest first."""

    async def last_id(self, *, wait_for_writers: bool = False) -> int:
        """Where a reader of ``after`` may start: every id up to it is settled (0 when the
        log is empty); ``wait_for_writers`` as for ``after``."""

    async def touched(
        self, after_id: int, types: Sequence[EventType]
    ) -> tuple[list[tuple[UUID | None, EventType, str | None, str | None]], int]:
        """The distinct (session, type, the state a transition went to, the one it came
        from) of the events of ``types`` after ``after_id``, and where the next look starts
        (``after_id`` when nothing is new); never waits for writers."""
