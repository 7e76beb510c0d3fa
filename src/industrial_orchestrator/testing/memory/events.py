"""The event log (``storage/event_repository.py`` in memory).

Appends wait in the transaction until it commits; ``flush`` then numbers them, as the
SQL one does right before COMMIT: per session, consecutively in the order they were
appended, from the session row's counter (bumped once per session per transaction, below
any numbers a ``sessions.save`` of the transaction reserved); global ids follow in
commit order, which the one writer at a time gives for free. A transaction does not see
its own events before it commits (the SQL one inserts them only then).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from uuid import UUID

from ...domain.events import Event, EventType, NewEvent
from .sessions import MemorySessionRepository
from .store import Transaction, json_copy


class MemoryEventRepository:
    def __init__(self, tx: Transaction, sessions: MemorySessionRepository) -> None:
        self._tx = tx
        self._sessions = sessions
        self._pending: list[NewEvent] = []
        # Per session: how many of the pending events have numbers reserved already,
        # and the last of those numbers.
        self._reserved: dict[UUID, tuple[int, int]] = {}

    async def append(
        self, new: Sequence[NewEvent], *, reserved: Mapping[UUID, int] | None = None
    ) -> None:
        if not new:
            return
        for session_id, last in (reserved or {}).items():
            count = sum(1 for event in new if event.session_id == session_id)
            before, _ = self._reserved.get(session_id, (0, 0))
            self._reserved[session_id] = (before + count, last)
        self._pending.extend(new)

    def flush(self) -> tuple[list[NewEvent], list[Event]]:
        """Number what ``append`` kept: the events as appended, and as they are to be
        stored (their ids the next of the committed log's). The session counters move in
        the transaction; the caller commits both at once."""
        if not self._pending:
            return [], []
        counts: dict[UUID, int] = {}
        for event in self._pending:
            if event.session_id is not None:
                counts[event.session_id] = counts.get(event.session_id, 0) + 1
        next_seq: dict[UUID, int] = {}
        for session_id in sorted(counts):
            taken, last = self._reserved.get(session_id, (0, 0))
            fresh = counts[session_id] - taken
            if fresh:
                last = self._sessions.bump_events(session_id, fresh)
            next_seq[session_id] = last - counts[session_id] + 1
        numbered: list[Event] = []
        next_id = len(self._tx.store.events) + 1
        for event in self._pending:
            seq = None
            if event.session_id is not None:
                seq = next_seq[event.session_id]
                next_seq[event.session_id] = seq + 1
            numbered.append(
                Event(
                    id=next_id + len(numbered),
                    type=event.type,
                    at=event.at,
                    session_id=event.session_id,
                    seq=seq,
                    payload=json_copy(event.payload),
                )
            )
        flushed, self._pending, self._reserved = self._pending, [], {}
        return flushed, numbered

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def forget(self) -> None:
        self._pending, self._reserved = [], {}

    async def for_session(
        self,
        session_id: UUID,
        *,
        after_seq: int,
        limit: int,
        types: Sequence[EventType] = (),
    ) -> list[Event]:
        log = self._tx.store.events_of_session.get(session_id, [])
        # A session's events are committed in the order of their numbers.
        start = bisect.bisect_right(log, after_seq, key=lambda event: event.seq or 0)
        return _first(log, start, limit, set(types), sessions_only=False)

    async def after(
        self,
        after_id: int,
        *,
        limit: int,
        types: Sequence[EventType] = (),
        sessions_only: bool = False,
        wait_for_writers: bool = False,
    ) -> list[Event]:
        # An event's id is its place in the log, from 1: given out at commit, so settled.
        return _first(
            self._tx.store.events, max(after_id, 0), limit, set(types), sessions_only=sessions_only
        )

    async def latest(self, *, limit: int, types: Sequence[EventType] = ()) -> list[Event]:
        wanted = set(types)
        found: list[Event] = []
        for event in reversed(self._tx.store.events):
            if len(found) >= limit:
                break
            if not wanted or event.type in wanted:
                found.append(_read(event))
        return found

    async def last_id(self, *, wait_for_writers: bool = False) -> int:
        return len(self._tx.store.events)

    async def touched(
        self, after_id: int, types: Sequence[EventType]
    ) -> tuple[list[tuple[UUID | None, EventType, str | None, str | None]], int]:
        wanted = set(types)
        found: dict[tuple[UUID | None, EventType, str | None, str | None], None] = {}
        log = self._tx.store.events
        for place in range(max(after_id, 0), len(log)):
            event = log[place]
            if event.type in wanted:
                to, came_from = event.payload.get("to"), event.payload.get("from")
                found[(event.session_id, event.type, _to(to), _to(came_from))] = None
        # The newest id after ``after_id``; ``after_id`` itself when there is none.
        return list(found), len(log) if len(log) > max(after_id, 0) else after_id


def _first(
    log: list[Event], start: int, limit: int, types: set[EventType], *, sessions_only: bool
) -> list[Event]:
    """The first ``limit`` events of ``log`` from ``start`` of ``types`` (any when empty)."""
    found: list[Event] = []
    for place in range(start, len(log)):
        if len(found) >= limit:
            break
        event = log[place]
        if (not types or event.type in types) and (
            not sessions_only or event.session_id is not None
        ):
            found.append(_read(event))
    return found


def _to(value: object) -> str | None:
    """The ``to`` of a payload as text, as PostgreSQL's ``->>`` gives it. (SQLite's
    JSON_EXTRACT gives a number or a boolean back as it is: only text is in the contract.)"""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _read(event: Event) -> Event:
    return Event(
        event.id, event.type, event.at, event.session_id, event.seq, json_copy(event.payload)
    )
