"""The event log: appended in the writer's transaction, read by sequence or global id.

Global ids are handed out in commit order, so a reader that has seen id N can ask for
``id > N`` and never miss an event that commits later with a smaller id. SQLite gives
this for free (one writer at a time). PostgreSQL hands out sequence values at INSERT
time, and two transactions may commit in the other order, so there every writer takes a
transaction-scoped advisory lock just before inserting its events and keeps it until it
commits; ``flush()`` is called by the unit of work as the very last statement before
COMMIT, which keeps the lock short and makes it the last lock any transaction takes (no
deadlock with the row and slot locks taken earlier).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.events import Event, EventType, NewEvent
from .rows import utc
from .tables import events, sessions

_EVENT_ORDER_LOCK_KEY = 7_305_118_044


class SqlEventRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._db = connection
        self._pending: list[dict[str, Any]] = []
        self._pending_events: list[NewEvent] = []

    async def append(
        self, new: Sequence[NewEvent], *, reserved: Mapping[UUID, int] | None = None
    ) -> None:
        """Number ``new`` and keep it for ``flush()``. Session events take consecutive
        per-session sequence numbers from a counter on the session row, whose row lock
        orders concurrent writers of one session by commit."""
        if not new:
            return
        by_session: dict[UUID, int] = {}
        for event in new:
            if event.session_id is not None:
                by_session[event.session_id] = by_session.get(event.session_id, 0) + 1
        next_seq: dict[UUID, int] = {}
        for session_id, count in by_session.items():
            if reserved is not None and session_id in reserved:
                next_seq[session_id] = reserved[session_id] - count + 1
                continue
            last = await self._db.scalar(
                sa.update(sessions)
                .where(sessions.c.id == session_id)
                .values(event_seq=sessions.c.event_seq + count)
                .returning(sessions.c.event_seq)
            )
            if last is None:
                raise LookupError(session_id)
            next_seq[session_id] = int(last) - count + 1
        for event in new:
            seq = None
            if event.session_id is not None:
                seq = next_seq[event.session_id]
                next_seq[event.session_id] = seq + 1
            self._pending.append(
                {
                    "session_id": event.session_id,
                    "seq": seq,
                    "type": event.type.value,
                    "at": event.at,
                    "payload": event.payload,
                }
            )
        self._pending_events.extend(new)

    async def flush(self) -> list[NewEvent]:
        """Insert what ``append`` kept; returns those events. Call right before COMMIT."""
        if not self._pending:
            return []
        if self._db.dialect.name == "postgresql":
            await self._db.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _EVENT_ORDER_LOCK_KEY}
            )
        await self._db.execute(sa.insert(events), self._pending)
        flushed, self._pending, self._pending_events = self._pending_events, [], []
        return flushed

    async def for_session(
        self,
        session_id: UUID,
        *,
        after_seq: int,
        limit: int,
        types: Sequence[EventType] = (),
    ) -> list[Event]:
        conditions = [events.c.session_id == session_id, events.c.seq > after_seq]
        if types:
            conditions.append(events.c.type.in_([t.value for t in types]))
        result = await self._db.execute(
            sa.select(events).where(*conditions).order_by(events.c.seq).limit(limit)
        )
        return [_event(row) for row in result.mappings()]

    async def after(
        self,
        after_id: int,
        *,
        limit: int,
        types: Sequence[EventType] = (),
        sessions_only: bool = False,
    ) -> list[Event]:
        conditions = [events.c.id > after_id]
        if types:
            conditions.append(events.c.type.in_([t.value for t in types]))
        if sessions_only:
            conditions.append(events.c.session_id.is_not(None))
        result = await self._db.execute(
            sa.select(events).where(*conditions).order_by(events.c.id).limit(limit)
        )
        return [_event(row) for row in result.mappings()]

    async def latest(self, *, limit: int, types: Sequence[EventType] = ()) -> list[Event]:
        query = sa.select(events).order_by(events.c.id.desc()).limit(limit)
        if types:
            query = query.where(events.c.type.in_([t.value for t in types]))
        result = await self._db.execute(query)
        return [_event(row) for row in result.mappings()]

    async def touched(
        self, after_id: int, upto_id: int, types: Sequence[EventType]
    ) -> list[tuple[UUID | None, EventType, str | None]]:
        # Narrow columns over the id range: what happened since the last look, never the
        # payloads (log lines are most of the log), only the state a transition went to.
        result = await self._db.execute(
            sa.select(events.c.session_id, events.c.type, events.c.payload["to"].as_string())
            .where(
                events.c.id > after_id,
                events.c.id <= upto_id,
                events.c.type.in_([t.value for t in types]),
            )
            .distinct()
        )
        return [(row[0], EventType(row[1]), row[2]) for row in result]

    async def last_id(self) -> int:
        last = await self._db.scalar(sa.select(sa.func.max(events.c.id)))
        return int(last or 0)


def _event(row: RowMapping) -> Event:
    at = utc(row["at"])
    assert at is not None
    return Event(
        id=int(row["id"]),
        type=EventType(row["type"]),
        at=at,
        session_id=row["session_id"],
        seq=row["seq"],
        payload=dict(row["payload"] or {}),
    )
