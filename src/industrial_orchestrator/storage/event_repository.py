"""The event log: appended in the writer's transaction, read by sequence or global id.

A reader that has seen global id N asks for ``id > N``, so it must never be shown an id
while a smaller one may still commit. SQLite gives this for free (one writer at a time).
PostgreSQL hands out ids at INSERT time, and two transactions may commit in the other
order, so there readers stop at a *watermark* instead of writers taking turns:

* Every writer registers in the statement that inserts its events, before the first row
  takes its id: a shared, transaction-scoped advisory lock whose two keys carry the last
  id given out when it registered (``WRITERS_TAG``; shared, so writers never wait for
  each other). Its ids are all above that number, and the lock goes when it commits.
* A reader first reads the last id given out, then the registrations held (``pg_locks``)
  in the same statement; everything up to the smaller of the two is settled, committed
  or rolled back for good, and its next statement (a fresh snapshot) reads up to there.
  An id given out before the reader looked belongs to a writer that had registered
  before it, and so either still holds its registration or has ended.
* A reader that must see what committed before it asked (the API's reads, a stream's
  history) waits instead for the registrations below the last id given out (an exclusive
  lock on each, which no new writer asks for: they register above it).

So ids still follow causality (a transaction that saw another's commit gives out larger
ids, and a session's events are numbered under its row lock), and ``id > last seen``
still never skips one; two independent commits may show in either order.

``flush()`` is called by the unit of work as the very last statement before COMMIT, so a
registration is short and the last lock a transaction takes.
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
from .direct_execution import fetch_all, fetch_first, run
from .rows import utc
from .tables import events, sessions
from .written_constants import constants

WRITERS_TAG = 24_601
"""Event writers' registrations among the database's two-key advisory locks: key 1 is
this tag times 2**15 plus the high bits of the last id given out when the writer
registered (ids below 2**47), key 2 its low 32 bits."""
LAST_GIVEN = (
    "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS v FROM events_id_seq"
)
"""The last id given out (0 before the first): a sequence's value is not transactional,
so this is the newest whatever the snapshot."""


def writer_registration(seen: str) -> str:
    """SQL: the registration of a writer, ``seen`` naming the last id given out (read
    before the writer's own ids are taken)."""
    return (
        f"pg_advisory_xact_lock_shared(({WRITERS_TAG} * 32768 + ({seen} >> 32))::int, "
        f"{seen}::bit(32)::int)"
    )


_REGISTERED = (
    "FROM pg_locks AS l WHERE seen.v IS NOT NULL AND l.locktype = 'advisory' "
    "AND l.objsubid = 2 AND l.mode = 'ShareLock' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    f"AND (l.classid::bigint >> 15) = {WRITERS_TAG}"
)
_SEEN_BY = "((l.classid::bigint & 32767) << 32) | l.objid::bigint"
# The last id given out, then (a lateral join: after it) the oldest registration held.
_WATERMARK = sa.text(
    f"SELECT seen.v AS given, held.oldest FROM ({LAST_GIVEN}) AS seen "
    f"CROSS JOIN LATERAL (SELECT min({_SEEN_BY}) AS oldest {_REGISTERED}) AS held"
)
# The last id given out, then the wait for every registration below it to end.
_SETTLED = sa.text(
    f"SELECT seen.v AS given, held.waited FROM ({LAST_GIVEN}) AS seen "
    "CROSS JOIN LATERAL (SELECT count(pg_advisory_xact_lock(w.k1, w.k2)) AS waited FROM "
    "(SELECT DISTINCT l.classid::bigint::int AS k1, l.objid::bigint::bit(32)::int AS k2 "
    f"{_REGISTERED} AND {_SEEN_BY} < seen.v) AS w) AS held"
)
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
        counter's bump, the writer's registration and the INSERT in one statement, after the
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
        wait_for_writers: bool = False,
    ) -> list[Event]:
        conditions = [events.c.id > after_id]
        settled = await self._settled(wait_for_writers)
        if settled is not None:
            conditions.append(events.c.id <= settled)
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
        # On PostgreSQL the range ends at the watermark, and the next look starts there:
        # everything up to it is settled. On SQLite the newest id comes in the same
        # statement, so from the same snapshot: an event committed after it is after that
        # id, never skipped.
        found: list[tuple[UUID | None, EventType, str | None, str | None]] = []
        last = after_id
        settled = await self._settled(wait_for_writers=False)
        kinds = tuple(sorted(t.value for t in types))
        if settled is not None:
            query, params = _touched_query(kinds, bounded=True), {"upto": settled}
            last = max(after_id, settled)
        else:
            query, params = _touched_query(kinds, bounded=False), {}
        for row in await fetch_all(self._db, query, {"after_id": after_id, **params}):
            session_id, kind, to, came_from, newest = row.values()
            if kind is None:
                last = max(last, int(newest or after_id))
            else:
                found.append((session_id, EventType(kind), to, came_from))
        return found, last

    async def last_id(self, *, wait_for_writers: bool = False) -> int:
        settled = await self._settled(wait_for_writers)
        if settled is not None:
            return settled
        last = await self._db.scalar(sa.select(sa.func.max(events.c.id)))
        return int(last or 0)

    async def _settled(self, wait_for_writers: bool) -> int | None:
        """PostgreSQL: the watermark, up to which every id is settled for the reader's
        next statement (see the module's docstring); waiting for the writers registered
        below the last id given out if ``wait_for_writers``. None on SQLite (one writer at a time:
        no bound needed)."""
        if self._db.dialect.name != "postgresql":
            return None
        row = await fetch_first(self._db, _SETTLED if wait_for_writers else _WATERMARK)
        assert row is not None
        given, oldest = row.values()
        if wait_for_writers or oldest is None:
            return int(given)
        return min(int(given), int(oldest))


@functools.lru_cache(maxsize=8)
def _touched_query(
    kinds: tuple[str, ...], *, bounded: bool
) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """``touched``'s statement, built once per set of types (there is one): the types are
    written into its text, not sent as an expanding IN, which would render the statement
    again on every look (the runner looks after every burst of commits). ``bounded``
    (PostgreSQL): the range ends at the watermark (``upto``), where the next look starts;
    else (SQLite) a last row carries the newest id of the range, read in the same
    snapshot."""
    after_id = sa.bindparam("after_id", type_=sa.BigInteger)
    in_range = [events.c.id > after_id]
    if bounded:
        in_range.append(events.c.id <= sa.bindparam("upto", type_=sa.BigInteger))
    happened = (
        sa.select(
            events.c.session_id,
            events.c.type,
            events.c.payload["to"].as_string().label("to"),
            events.c.payload["from"].as_string().label("came_from"),
            sa.literal(None, sa.BigInteger).label("last"),
        )
        .where(*in_range, events.c.type.in_(constants(kinds)))
        .distinct()
    )
    if bounded:
        return happened
    newest = sa.select(
        sa.literal(None, events.c.session_id.type),
        sa.literal(None, events.c.type.type),
        sa.literal(None, sa.String),
        sa.literal(None, sa.String),
        sa.func.max(events.c.id),
    ).where(*in_range)
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


# PostgreSQL: the writer's registration and the INSERT in one statement (one round trip,
# not two). The rows are produced by a join with the registration's one-row subquery, so
# it is held before the first row takes its id; ``ORDER BY`` keeps the ids in the order
# given. The rows come as arrays, so the statement's text is the same whatever their
# number: compiled once and prepared once per connection, where a multi-row VALUES is
# compiled afresh every time.
# The events as ``_arrays`` gives them: the binds of every statement that inserts events.
_EVENT_BINDS = (
    sa.bindparam("session_ids", type_=ARRAY(sa.Uuid)),
    sa.bindparam("seqs", type_=ARRAY(sa.Integer)),
    sa.bindparam("types", type_=ARRAY(sa.Text)),
    sa.bindparam("ats", type_=ARRAY(sa.DateTime(timezone=True))),
    sa.bindparam("payloads", type_=ARRAY(sa.Text)),
)
_ORDERED_INSERT = sa.text(
    "INSERT INTO events (session_id, seq, type, at, payload) "
    "SELECT new.session_id, new.seq, new.type, new.at, CAST(new.payload AS JSONB) "
    f"FROM (SELECT {writer_registration('seen.v')} FROM ({LAST_GIVEN}) AS seen) AS ordered, "
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
# The same with the session's counter bumped first, in the same statement: the
# registration's subquery reads the bumped row, so the session's row lock is taken (and
# waited for) before the writer registers, as when they are two statements (``flush``);
# the numbers are the bumped counter's last ``count``. ``{after}``: what the bump waits
# for, if anything.
_BUMP_SQL = (
    "UPDATE sessions SET event_seq = event_seq + :fresh WHERE id = :session_id{after} "
    "RETURNING event_seq"
)
_NUMBERED_INSERT = (
    "INSERT INTO events (session_id, seq, type, at, payload) "
    "SELECT new.session_id, ordered.last - :count + new.n, new.type, new.at, "
    "CAST(new.payload AS JSONB) "
    f"FROM (SELECT {writer_registration('seen.v')}, bumped.event_seq AS last FROM bumped "
    f"CROSS JOIN LATERAL ({LAST_GIVEN} WHERE bumped.event_seq IS NOT NULL) AS seen) "
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
# session's and the registration, as when they are statements of their own.
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
