"""The event log: appended in the writer's transaction, read by sequence or global id.

Global ids are handed out in commit order, so a reader that has seen id N can ask for
``id > N`` and never miss an event that commits later with a smaller id. SQLite gives
this for free (one writer at a time). PostgreSQL hands out sequence values at INSERT
time, and two transactions may commit in the other order, so there every writer takes a
transaction-scoped advisory lock in the statement that inserts its events (before the
first row takes its id) and keeps it until it commits; ``flush()`` is called by the unit
of work as the very last statement before COMMIT, which keeps the lock short and makes
it the last lock any transaction takes (no deadlock with the row and family locks
taken earlier).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.events import Event, EventType, NewEvent
from .commit_writes import CommitWrites
from .database import storable_json_text
from .direct_execution import fetch_all, run
from .rows import utc
from .tables import events, sessions
from .written_constants import constant

EVENT_ORDER_LOCK_KEY = 7_305_118_044
# Built once (run by every transaction that stores events): a built statement keeps its
# cache key.
_BUMP = (
    sa.update(sessions)
    .where(sessions.c.id == sa.bindparam("session_id"))
    .values(event_seq=sessions.c.event_seq + sa.bindparam("fresh", type_=sa.Integer))
    .returning(sessions.c.event_seq)
)
_INSERT = sa.insert(events)


class SqlEventRepository:
    def __init__(self, connection: AsyncConnection, writes: CommitWrites | None = None) -> None:
        self._db = connection
        self._writes = CommitWrites(connection) if writes is None else writes
        """The transaction's writes kept for its commit: they join the events' statement."""
        self._pending: list[NewEvent] = []
        # Per session: how many of the pending events have numbers reserved already,
        # and the last of those numbers.
        self._reserved: dict[UUID, tuple[int, int]] = {}
        self._stored_apart: list[NewEvent] = []

    async def append(
        self, new: Sequence[NewEvent], *, reserved: Mapping[UUID, int] | None = None
    ) -> None:
        """Keep ``new`` for ``flush()``, which numbers and inserts the transaction's events.
        ``reserved`` maps a session to the last of the numbers ``SessionRepository.save``
        reserved for its events in ``new`` (in the same transaction)."""
        if not new:
            return
        for session_id, last in (reserved or {}).items():
            count = sum(1 for event in new if event.session_id == session_id)
            before, _ = self._reserved.get(session_id, (0, 0))
            self._reserved[session_id] = (before + count, last)
        self._pending.extend(new)

    def stored_apart(self, new: Sequence[NewEvent]) -> None:
        """Events a statement of this transaction numbered and inserted itself
        (``lease_statement``): ``flush`` returns them with its own, for the commit's
        listeners."""
        self._stored_apart.extend(new)

    async def flush(self) -> list[NewEvent]:
        """Number and insert what ``append`` kept, with the writes kept for the commit
        (``CommitWrites``); returns those events (after any stored apart). Call right
        before COMMIT."""
        apart, self._stored_apart = self._stored_apart, []
        return [*apart, *await self._flush_pending()]

    async def _flush_pending(self) -> list[NewEvent]:
        """``flush`` of what ``append`` kept.

        A session's events take consecutive sequence numbers in the order they were
        appended, from a counter on the session row whose row lock orders its writers
        by commit. The counter is bumped once per session here, for the events that have
        no number reserved; the numbers a ``SessionRepository.save`` of this transaction
        reserved are just below the bump's (the save took the row lock, so nobody else
        numbered in between), and the session's events take the whole run of numbers.

        Bumping here, not in ``append``, takes the session row lock at the end of the
        transaction, after every family, task, attempt and agent lock: a transaction
        that locks the session row earlier (a session transition, a result's usage)
        takes none of those after it, except under the family lock that serialises the
        writers of the family anyway. Sessions are bumped in id order, so two flushes
        never wait for each other's rows in turn."""
        if not self._pending:
            await self._writes.flush()
            return []
        counts: dict[UUID, int] = {}
        for event in self._pending:
            if event.session_id is not None:
                counts[event.session_id] = counts.get(event.session_id, 0) + 1
        if self._db.dialect.name == "postgresql" and len(counts) == 1:
            [(session_id, count)] = counts.items()
            fresh = count - self._reserved.get(session_id, (0, 0))[0]
            if fresh and count == len(self._pending):
                await self._bump_and_insert(session_id, count, fresh)
                flushed, self._pending, self._reserved = self._pending, [], {}
                return flushed
        await self._writes.flush()
        next_seq: dict[UUID, int] = {}
        for session_id in sorted(counts):
            taken, last = self._reserved.get(session_id, (0, 0))
            fresh = counts[session_id] - taken
            if fresh:
                bumped = await self._db.scalar(_BUMP, {"session_id": session_id, "fresh": fresh})
                if bumped is None:
                    raise LookupError(session_id)
                last = int(bumped)
            next_seq[session_id] = last - counts[session_id] + 1
        rows: list[dict[str, Any]] = []
        for event in self._pending:
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
        if self._db.dialect.name == "postgresql":
            await run(self._db, _ORDERED_INSERT, _arrays(rows))
        else:
            # One statement, compiled once, run for each row in the order given (one
            # writer at a time: the rows take their ids in that order).
            await self._db.execute(_INSERT, rows)
        flushed, self._pending, self._reserved = self._pending, [], {}
        return flushed

    async def _bump_and_insert(self, session_id: UUID, count: int, fresh: int) -> None:
        """PostgreSQL, the usual case (one session's events, some not numbered yet): the
        counter's bump, the event-order lock and the INSERT in one statement, after the
        writes kept for the commit."""
        rows = [
            {
                "session_id": session_id,
                "seq": None,
                "type": e.type.value,
                "at": e.at,
                "payload": e.payload,
            }
            for e in self._pending
        ]
        params = {"session_id": session_id, "count": count, "fresh": fresh, **_arrays(rows)}
        inserted = await self._writes.flush((_WRITTEN_BUMPED_INSERT, params))
        if inserted is None:
            inserted = await run(self._db, _BUMPED_INSERT, params)
        if inserted != count:
            raise LookupError(session_id)

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
        self, after_id: int, types: Sequence[EventType]
    ) -> tuple[list[tuple[UUID | None, EventType, str | None, str | None]], int]:
        # Narrow columns over the id range: what happened since the last look, never the
        # payloads (log lines are most of the log), only the state a transition went to.
        # The newest id comes in the same statement, so from the same snapshot: an event
        # committed after it is after that id, never skipped.
        found: list[tuple[UUID | None, EventType, str | None, str | None]] = []
        last = after_id
        query = _touched_query(tuple(sorted(t.value for t in types)))
        for row in await fetch_all(self._db, query, {"after_id": after_id}):
            session_id, kind, to, came_from, newest = row.values()
            if kind is None:
                last = max(last, int(newest or after_id))
            else:
                found.append((session_id, EventType(kind), to, came_from))
        return found, last

    async def last_id(self) -> int:
        last = await self._db.scalar(sa.select(sa.func.max(events.c.id)))
        return int(last or 0)


@functools.lru_cache(maxsize=8)
def _touched_query(kinds: tuple[str, ...]) -> sa.CompoundSelect[Any]:
    """``touched``'s statement, built once per set of types (there is one): the types are
    written into its text, not sent as an expanding IN, which would render the statement
    again on every look (the runner looks after every burst of commits)."""
    after_id = sa.bindparam("after_id", type_=sa.BigInteger)
    happened = (
        sa.select(
            events.c.session_id,
            events.c.type,
            events.c.payload["to"].as_string().label("to"),
            events.c.payload["from"].as_string().label("came_from"),
            sa.literal(None, sa.BigInteger).label("last"),
        )
        .where(
            events.c.id > after_id,
            events.c.type.in_([constant(kind) for kind in kinds]),
        )
        .distinct()
    )
    newest = sa.select(
        sa.literal(None, events.c.session_id.type),
        sa.literal(None, events.c.type.type),
        sa.literal(None, sa.String),
        sa.literal(None, sa.String),
        sa.func.max(events.c.id),
    ).where(events.c.id > after_id)
    return sa.union_all(happened, newest)


def _arrays(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The rows as the arrays ``_ORDERED_INSERT`` and ``_BUMPED_INSERT`` take."""
    return {
        "session_ids": [row["session_id"] for row in rows],
        "seqs": [row["seq"] for row in rows],
        "types": [row["type"] for row in rows],
        "ats": [row["at"] for row in rows],
        "payloads": [storable_json_text(row["payload"]) for row in rows],
    }


# PostgreSQL: the event-order lock and the INSERT in one statement (one round trip, not
# two). The rows are produced by a join with the lock's one-row subquery, so the lock is
# held before the first row takes its id; ``ORDER BY`` keeps the ids in the order given.
# The rows come as arrays, so the statement's text is the same whatever their number:
# compiled once and prepared once per connection, where a multi-row VALUES is compiled
# afresh every time.
# The events as ``_arrays`` gives them, and the event-order lock's key: the binds of
# every statement that inserts events.
_EVENT_BINDS = (
    sa.bindparam("key", EVENT_ORDER_LOCK_KEY, type_=sa.BigInteger),
    sa.bindparam("session_ids", type_=ARRAY(sa.Uuid)),
    sa.bindparam("seqs", type_=ARRAY(sa.Integer)),
    sa.bindparam("types", type_=ARRAY(sa.Text)),
    sa.bindparam("ats", type_=ARRAY(sa.DateTime(timezone=True))),
    sa.bindparam("payloads", type_=ARRAY(sa.Text)),
)
_ORDERED_INSERT = sa.text(
    "INSERT INTO events (session_id, seq, type, at, payload) "
    "SELECT new.session_id, new.seq, new.type, new.at, CAST(new.payload AS JSONB) "
    "FROM (SELECT pg_advisory_xact_lock(:key)) AS ordered, "
    "unnest(:session_ids, :seqs, :types, :ats, :payloads) "
    "WITH ORDINALITY AS new(session_id, seq, type, at, payload, n) "
    "ORDER BY new.n"
).bindparams(*_EVENT_BINDS)
_BUMPED_BINDS = (
    *_EVENT_BINDS,
    sa.bindparam("session_id", type_=sa.Uuid),
    sa.bindparam("count", type_=sa.Integer),
    sa.bindparam("fresh", type_=sa.Integer),
)
# The same with the session's counter bumped first, in the same statement: the lock
# subquery reads the bumped row, so the session's row lock is taken before the event-order
# lock, as when they are two statements (``flush``); the numbers are the bumped counter's
# last ``count``. ``{after}``: what the bump waits for, if anything.
_BUMP_SQL = (
    "UPDATE sessions SET event_seq = event_seq + :fresh WHERE id = :session_id{after} "
    "RETURNING event_seq"
)
_NUMBERED_INSERT = (
    "INSERT INTO events (session_id, seq, type, at, payload) "
    "SELECT new.session_id, ordered.last - :count + new.n, new.type, new.at, "
    "CAST(new.payload AS JSONB) "
    "FROM (SELECT pg_advisory_xact_lock(:key), bumped.event_seq AS last FROM bumped) "
    "AS ordered, "
    "unnest(:session_ids, :seqs, :types, :ats, :payloads) "
    "WITH ORDINALITY AS new(session_id, seq, type, at, payload, n) "
    "ORDER BY new.n"
)
_BUMPED_INSERT = sa.text(
    f"WITH bumped AS ({_BUMP_SQL.format(after='')}) {_NUMBERED_INSERT}"
).bindparams(*_BUMPED_BINDS)
# The same as CTEs that follow the writes kept for the commit (``CommitWrites.flush``):
# the bump waits for their counts (``written``), so their row locks come before the
# session's and the event-order lock, as when they are statements of their own.
_WRITTEN_BUMPED_INSERT = sa.text(
    f"bumped AS ({_BUMP_SQL.format(after=' AND (SELECT written IS NOT NULL FROM written)')}), "
    f"tail AS ({_NUMBERED_INSERT} RETURNING 1)"
).bindparams(*_BUMPED_BINDS)


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
