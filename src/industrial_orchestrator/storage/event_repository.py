"""The event log: appended in the writer's transaction, read by sequence or global id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.events import Event, EventType, NewEvent
from .rows import utc
from .tables import events, sessions


class SqlEventRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._db = connection

    async def append(
        self, new: Sequence[NewEvent], *, reserved: Mapping[UUID, int] | None = None
    ) -> None:
        """Store ``new`` in order. Session events take consecutive per-session sequence
        numbers from a counter on the session row, whose row lock orders concurrent
        writers of one session by commit."""
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
        rows = []
        for event in new:
            seq = None
            if event.session_id is not None:
                seq = next_seq[event.session_id]
                next_seq[event.session_id] = seq + 1
            rows.append(
                {
                    "session_id": event.session_id,
                    "seq": seq,
                    "type": event.type.value,
                    "at": event.at,
                    "payload": event.payload,
                }
            )
        await self._db.execute(sa.insert(events), rows)

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
