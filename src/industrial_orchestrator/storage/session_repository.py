"""Sessions and their transition history, stored with guarded updates."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.sessions.session import Session, Transition, WorktreeBinding
from ..domain.sessions.states import RUNNING_STATES, SessionState
from ..services.ports import DuplicateKeyError, IdempotentCreation, SessionQuery, SessionTotals
from .direct_execution import fetch_first, fetch_value, run
from .listed import one_of
from .rows import (
    changed_columns,
    session_from_row,
    session_values,
    transition_from_row,
    transition_values,
)
from .tables import running_slots, session_transitions, sessions
from .written_constants import constant, constants

_RUNNING = constants(state.value for state in RUNNING_STATES)
# Any 64-bit constant works; it only has to be the same in every replica.
_QUEUE_LOCK_KEY = 7_305_118_043
_LOCK_QUEUE = sa.text("SELECT pg_advisory_xact_lock(:key)")
# Running slots (``tables.running_slots``), the statements built once.
_LOCK_SESSION = (
    sa.select(sessions.c.id).where(sessions.c.id == sa.bindparam("session_id")).with_for_update()
)
_held_above = running_slots.alias("held_above")
# The first free slot within the limit that no concurrent taker holds locked (SQLite has
# no row locks and ignores the clause: its writers take turns), unless a slot above the
# limit is still held or the taker holds one already.
_FREE_SLOT = (
    sa.select(running_slots.c.slot)
    .where(
        running_slots.c.session_id.is_(None),
        running_slots.c.slot <= sa.bindparam("capacity"),
        ~sa.exists().where(
            _held_above.c.slot > sa.bindparam("capacity"),
            _held_above.c.session_id.is_not(None),
        ),
        ~sa.exists().where(_held_above.c.session_id == sa.bindparam("taker")),
    )
    .order_by(running_slots.c.slot)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_TAKE_SLOT = (
    sa.update(running_slots)
    .where(running_slots.c.slot == _FREE_SLOT)
    .values(session_id=sa.bindparam("taker"))
    .returning(running_slots.c.slot)
)
_GIVE_BACK_SLOT = (
    sa.update(running_slots)
    .where(running_slots.c.session_id == sa.bindparam("holder"))
    .values(session_id=None)
)
# The slots within the limit, and those above it still held (the limit was lowered).
_SLOTS = sa.select(
    running_slots.c.slot,
    (running_slots.c.slot > sa.bindparam("capacity")).label("held_above"),
).where(
    sa.or_(
        running_slots.c.slot <= sa.bindparam("capacity"),
        running_slots.c.session_id.is_not(None),
    )
)
_ADD_SLOT_TRIES = 4
# PostgreSQL: a new slot for the session, numbered as ``_missing_number`` picks (while the
# slots are sparse, the first missing of 16 numbers drawn at random: one draw alone hit a
# slot that exists up to half the time, and four such misses queued a start with slots to
# spare; a concurrent maker of the same number makes ``added`` NULL and ``no_room`` false:
# try again), unless every slot within the limit exists or one above it is held (``no_room``).
_MAKE_SLOT = sa.text(
    """
    WITH counted AS (
        SELECT count(*) FILTER (WHERE slot <= CAST(:capacity AS INTEGER)) AS made,
               coalesce(bool_or(slot > CAST(:capacity AS INTEGER)
                                AND session_id IS NOT NULL), false) AS above
        FROM running_slots
    ), pick AS (
        SELECT CASE
            WHEN above OR made >= CAST(:capacity AS INTEGER) THEN NULL
            WHEN made * 2 < CAST(:capacity AS INTEGER)
                THEN (SELECT drawn.n FROM (
                          SELECT floor(random() * CAST(:capacity AS INTEGER))::INTEGER + 1 AS n
                          FROM generate_series(1, 16)) AS drawn
                      WHERE NOT EXISTS (SELECT 1 FROM running_slots r WHERE r.slot = drawn.n)
                      LIMIT 1)
            ELSE (SELECT n FROM generate_series(1, CAST(:capacity AS INTEGER)) n
                  WHERE NOT EXISTS (SELECT 1 FROM running_slots r WHERE r.slot = n)
                  ORDER BY random() LIMIT 1)
        END AS slot,
        above OR made >= CAST(:capacity AS INTEGER) AS no_room
        FROM counted
    ), added AS (
        INSERT INTO running_slots (slot, session_id)
        SELECT slot, CAST(:session_id AS UUID) FROM pick WHERE slot IS NOT NULL
        ON CONFLICT DO NOTHING
        RETURNING slot
    )
    SELECT (SELECT slot FROM added) AS added, (SELECT no_room FROM pick) AS no_room
    """
)
_ANYONE_QUEUED = sa.select(
    sa.exists().where(sessions.c.status == constant(SessionState.QUEUED.value))
)


@functools.cache
def _add_slot(dialect: str) -> Any:
    insert = (
        postgresql.insert(running_slots)
        if dialect == "postgresql"
        else sqlite.insert(running_slots)
    )
    return insert.on_conflict_do_nothing().returning(running_slots.c.slot)


def _missing_number(existing: set[int], capacity: int) -> int:
    """A slot number in 1..capacity not in ``existing`` (fewer than ``capacity``), at
    random: guesses while the slots are sparse, a pick among the missing when dense."""
    if len(existing) * 2 < capacity:
        while True:
            number = secrets.randbelow(capacity) + 1
            if number not in existing:
                return number
    return secrets.choice([n for n in range(1, capacity + 1) if n not in existing])


# Built once (the most frequent read): a built statement keeps its cache key.
_BY_ID = sa.select(sessions).where(sessions.c.id == sa.bindparam("session_id"))
# The hot writes, built once too: the SET clause is the execution's own columns (besides
# the w_ guards), compiled once per set of columns.
_GUARDED = (
    sessions.c.id == sa.bindparam("w_id"),
    sessions.c.version == sa.bindparam("w_version"),
    sessions.c.status == sa.bindparam("w_status"),
)
_GUARDED_UPDATE = sa.update(sessions).where(*_GUARDED).returning(sessions.c.event_seq)
_GUARDED_UPDATE_RESERVING = (
    sa.update(sessions)
    .where(*_GUARDED)
    .values(event_seq=sessions.c.event_seq + sa.bindparam("w_reserve", type_=sa.Integer))
    .returning(sessions.c.event_seq)
)
_OWNER = sa.select(sessions.c.owner).where(sessions.c.id == sa.bindparam("session_id"))
_OWN = (
    sa.update(sessions)
    .where(
        sessions.c.id == sa.bindparam("session_id"),
        sa.or_(
            sessions.c.owner.is_(None),
            sessions.c.owner == sa.bindparam("owner"),
            sessions.c.owner_expires_at < sa.bindparam("now"),
        ),
    )
    .values(owner=sa.bindparam("owner"), owner_expires_at=sa.bindparam("until"))
)
# PostgreSQL: the lease and the owner before it in one statement, the row locked first
# (so the owner read is the one the update replaces).
_BEFORE = (
    sa.select(sessions.c.id, sessions.c.owner.label("previous"))
    .where(sessions.c.id == sa.bindparam("session_id"))
    .with_for_update()
    .subquery("before")
)
_OWN_AFTER = _OWN.where(sessions.c.id == _BEFORE.c.id).returning(_BEFORE.c.previous)
_KEEP = (
    sa.update(sessions)
    .where(
        sessions.c.id == sa.bindparam("session_id"),
        sa.or_(sessions.c.owner.is_(None), sessions.c.owner == sa.bindparam("owner")),
    )
    .values(owner=sa.bindparam("owner"), owner_expires_at=sa.bindparam("until"))
)
# Whether another's lease of the session ran out (the row as it was before ``_KEEP``).
_LAPSED = sa.select(
    sa.and_(
        sessions.c.owner != sa.bindparam("owner"),
        sessions.c.owner_expires_at < sa.bindparam("now"),
    ).label("lapsed")
).where(sessions.c.id == sa.bindparam("session_id"))
# PostgreSQL: ``_KEEP`` and what it found in one statement (from the same snapshot).
_KEPT = sa.select(
    sa.select(sa.func.count())
    .select_from(_KEEP.returning(sessions.c.id).cte("kept"))
    .scalar_subquery()
    .label("kept"),
    _LAPSED.subquery("found").c.lapsed,
)
_SET_NEXT_DUE = sa.update(sessions).where(sessions.c.id == sa.bindparam("session_id"))
_INSERT_TRANSITION = sa.insert(session_transitions)
_INSERT_SESSION = sa.insert(sessions)
# The SET clause is the execution's own columns (besides the w_ guard).
_BIND_WORKTREE = sa.update(sessions).where(
    sessions.c.id == sa.bindparam("w_id"), sessions.c.worktree.is_(None)
)
_EXISTS = sa.select(sa.literal(True)).where(sessions.c.id == sa.bindparam("session_id"))


@functools.cache
def _next_checkpoint_seq(dialect: str) -> sa.Update:
    excluded = sa.not_(one_of(sessions.c.status, "unless_in", sa.String, dialect))
    return (
        sa.update(sessions)
        .where(sessions.c.id == sa.bindparam("session_id"), excluded)
        .values(checkpoint_seq=sessions.c.checkpoint_seq + sa.bindparam("count", type_=sa.Integer))
        .returning(sessions.c.checkpoint_seq)
    )


class SqlSessionRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._db = connection

    async def add(
        self, session: Session, idempotency_key: str | None, request_hash: str | None
    ) -> None:
        values = session_values(session)
        values.update(idempotency_key=idempotency_key, idempotency_hash=request_hash)
        try:
            await run(self._db, _INSERT_SESSION, values)
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    async def get(self, session_id: UUID) -> Session | None:
        row = await fetch_first(self._db, _BY_ID, {"session_id": session_id})
        return session_from_row(row) if row else None

    async def find_retry(self, session_id: UUID) -> Session | None:
        result = await self._db.execute(
            sa.select(sessions).where(sessions.c.retry_of == session_id)
        )
        row = result.mappings().first()
        return session_from_row(row) if row else None

    async def forks_of(self, session_id: UUID) -> list[UUID]:
        result = await self._db.execute(
            sa.select(sessions.c.id)
            .where(sessions.c.forked_from == session_id)
            .order_by(sessions.c.created_at, sessions.c.id)
        )
        return list(result.scalars())

    async def on_workspace(self, workspace: str, *, limit: int) -> list[Session]:
        result = await self._db.execute(
            sa.select(sessions)
            .where(sessions.c.workspace == workspace, sessions.c.worktree.is_not(None))
            .order_by(sessions.c.created_at.desc(), sessions.c.id)
            .limit(limit)
        )
        return [session_from_row(row) for row in result.mappings()]

    async def get_by_idempotency_key(self, key: str) -> IdempotentCreation | None:
        result = await self._db.execute(
            sa.select(sessions).where(sessions.c.idempotency_key == key)
        )
        row = result.mappings().first()
        if row is None:
            return None
        return IdempotentCreation(session_from_row(row), row["idempotency_hash"] or "")

    async def save(self, before: Session, after: Session, *, reserve_events: int = 0) -> int | None:
        old, new = session_values(before), session_values(after)
        # Only what changed: a transition touches a handful of the row's columns.
        changes = changed_columns(old, new, version=None if reserve_events else before.version)
        guards = {"w_id": before.id, "w_version": before.version, "w_status": old["status"]}
        if reserve_events:
            last = await fetch_value(
                self._db,
                _GUARDED_UPDATE_RESERVING,
                {**changes, **guards, "w_reserve": reserve_events},
            )
        else:
            last = await fetch_value(self._db, _GUARDED_UPDATE, {**changes, **guards})
        return None if last is None else int(last)

    async def ids_in(self, states: Sequence[SessionState]) -> list[UUID]:
        result = await self._db.execute(
            sa.select(sessions.c.id)
            .where(sessions.c.status.in_(constants(s.value for s in states)))
            .order_by(sessions.c.created_at, sessions.c.id)
        )
        return [row[0] for row in result]

    async def own(self, session_id: UUID, owner: str, now: datetime, until: datetime) -> str | None:
        """Take or renew the ownership lease of ``session_id`` for ``owner`` when it is
        free, expired or ``owner``'s already. Returns the previous owner when taken over
        from another, ``owner`` when held, None when someone else holds it."""
        values = {"session_id": session_id, "owner": owner, "now": now, "until": until}
        if self._db.dialect.name == "postgresql":
            row = await fetch_first(self._db, _OWN_AFTER, values)
            if row is None:
                return None
            previous = next(iter(row.values()))
        else:  # one writer at a time: nothing moves between the two
            previous = await self._db.scalar(_OWNER, {"session_id": session_id})
            if (await self._db.execute(_OWN, values)).rowcount != 1:
                return None
        return previous if previous not in (None, owner) else owner

    async def keep(
        self, session_id: UUID, owner: str, now: datetime, until: datetime
    ) -> bool | None:
        values = {"session_id": session_id, "owner": owner, "until": until, "now": now}
        if self._db.dialect.name == "postgresql":
            row = await fetch_first(self._db, _KEPT, values)
            if row is not None and row["kept"]:
                return True
        else:  # one writer at a time: nothing moves between the two
            row = await fetch_first(self._db, _LAPSED, values)
            if row is not None and await run(self._db, _KEEP, values) == 1:
                return True
        return None if row is not None and row["lapsed"] else False

    async def disown(self, owner: str, session_id: UUID | None = None) -> int:
        """Give up ``owner``'s leases (of one session, or all)."""
        conditions = [sessions.c.owner == owner]
        if session_id is not None:
            conditions.append(sessions.c.id == session_id)
        result = await self._db.execute(
            sa.update(sessions).where(*conditions).values(owner=None, owner_expires_at=None)
        )
        return int(result.rowcount or 0)

    async def renew_owned(
        self, owner: str, states: Sequence[SessionState], until: datetime
    ) -> list[UUID]:
        result = await self._db.execute(
            sa.update(sessions)
            .where(
                sessions.c.owner == owner, sessions.c.status.in_(constants(s.value for s in states))
            )
            .values(owner_expires_at=until)
            .returning(sessions.c.id)
        )
        return [row[0] for row in result]

    async def unowned_in(self, states: Sequence[SessionState], now: datetime) -> list[UUID]:
        result = await self._db.execute(
            sa.select(sessions.c.id).where(
                sessions.c.status.in_(constants(s.value for s in states)),
                sa.or_(sessions.c.owner.is_(None), sessions.c.owner_expires_at < now),
            )
        )
        return [row[0] for row in result]

    async def set_next_due(self, session_id: UUID, at: datetime | None) -> None:
        await run(self._db, _SET_NEXT_DUE, {"session_id": session_id, "next_due_at": at})

    async def checkpoint_checked(self, session_id: UUID, at: datetime) -> None:
        await self._db.execute(
            sa.update(sessions).where(sessions.c.id == session_id).values(checkpoint_checked_at=at)
        )

    async def take_due(
        self, owner: str, states: Sequence[SessionState], now: datetime
    ) -> list[UUID]:
        result = await self._db.execute(
            sa.update(sessions)
            .where(
                sessions.c.owner == owner,
                sessions.c.next_due_at <= now,
                sessions.c.status.in_(constants(s.value for s in states)),
            )
            .values(next_due_at=None)
            .returning(sessions.c.id)
        )
        return [row[0] for row in result]

    async def forget_owners(self) -> int:
        """Clear every ownership lease (a single-process database after a restart)."""
        result = await self._db.execute(
            sa.update(sessions)
            .where(sessions.c.owner.is_not(None))
            .values(owner=None, owner_expires_at=None)
        )
        return int(result.rowcount or 0)

    async def bind_worktree(self, session_id: UUID, binding: WorktreeBinding) -> bool:
        bound = {
            "w_id": session_id,
            "worktree": binding.path,
            "branch": binding.branch,
            "base_commit": binding.base_commit,
        }
        return await run(self._db, _BIND_WORKTREE, bound) == 1

    async def add_usage(self, session_id: UUID, tokens: int, cost_usd: float) -> None:
        await self._db.execute(
            sa.update(sessions)
            .where(sessions.c.id == session_id)
            .values(
                tokens_used=sessions.c.tokens_used + tokens,
                cost_usd=sessions.c.cost_usd + cost_usd,
            )
        )

    async def add_transition(self, record: Transition) -> None:
        await run(self._db, _INSERT_TRANSITION, transition_values(record))

    async def transitions(self, session_id: UUID) -> list[Transition]:
        result = await self._db.execute(
            sa.select(session_transitions)
            .where(session_transitions.c.session_id == session_id)
            .order_by(session_transitions.c.seq)
        )
        return [transition_from_row(row) for row in result.mappings()]

    async def search(self, query: SessionQuery) -> tuple[list[Session], int]:
        conditions: list[sa.ColumnElement[bool]] = []
        if query.statuses:
            conditions.append(sessions.c.status.in_(constants(s.value for s in query.statuses)))
        if query.priorities:
            conditions.append(sessions.c.priority.in_([p.value for p in query.priorities]))
        if query.text:
            conditions.append(
                sa.or_(
                    sessions.c.title.icontains(query.text, autoescape=True),
                    sessions.c.initial_prompt.icontains(query.text, autoescape=True),
                )
            )
        total = await self._db.scalar(
            sa.select(sa.func.count()).select_from(sessions).where(*conditions)
        )
        result = await self._db.execute(
            sa.select(sessions)
            .where(*conditions)
            .order_by(sessions.c.created_at.desc(), sessions.c.id.desc())
            .offset(query.offset)
            .limit(query.limit)
        )
        return [session_from_row(row) for row in result.mappings()], int(total or 0)

    async def count_running(self) -> int:
        count = await self._db.scalar(
            sa.select(sa.func.count()).select_from(sessions).where(sessions.c.status.in_(_RUNNING))
        )
        return int(count or 0)

    async def take_running_slot(
        self, session_id: UUID, capacity: int, *, new: bool = False
    ) -> bool:
        if self._db.dialect.name == "postgresql" and not new:
            # Two takers for one session would both find it slotless and the second
            # would break the unique holder: the session's own row lock orders them, and
            # the second's take, a new statement, sees the first's slot. (SQLite writers
            # hold the database lock already.)
            await run(self._db, _LOCK_SESSION, {"session_id": session_id})
        taken = await fetch_value(self._db, _TAKE_SLOT, {"taker": session_id, "capacity": capacity})
        if taken is not None:
            return True
        return await self._add_slot(session_id, capacity)

    async def _add_slot(self, session_id: UUID, capacity: int) -> bool:
        """No slot is free: make one for the session if fewer than ``capacity`` exist.
        Slots are made as they are first needed (a limit of 100,000 costs nothing until
        that many run), each at a number picked at random among the missing ones, so
        concurrent makers rarely pick the same; one that did waits for the other's
        transaction (the number's key) and picks again."""
        if self._db.dialect.name == "postgresql":
            # The look and the pick in the statement that makes the slot: the server
            # counts the slots, where a read of them all would cost each start a row
            # per running session.
            for _ in range(_ADD_SLOT_TRIES):
                made = await fetch_first(
                    self._db, _MAKE_SLOT, {"session_id": session_id, "capacity": capacity}
                )
                assert made is not None  # one row, always
                if made["added"] is not None:
                    return True
                if made["no_room"]:
                    return False
            return False
        for _ in range(_ADD_SLOT_TRIES):
            rows = (await self._db.execute(_SLOTS, {"capacity": capacity})).all()
            if any(above for _, above in rows) or len(rows) >= capacity:
                return False  # a slot above the limit is held, or every slot exists
            number = _missing_number({slot for slot, _ in rows}, capacity)
            made = await self._db.scalar(
                _add_slot(self._db.dialect.name), {"slot": number, "session_id": session_id}
            )
            if made is not None:
                return True
        return False

    async def give_back_running_slot(self, session_id: UUID) -> None:
        await run(self._db, _GIVE_BACK_SLOT, {"holder": session_id})

    async def lock_queue(self) -> None:
        # SQLite writers hold the database lock already (BEGIN IMMEDIATE).
        if self._db.dialect.name == "postgresql":
            await run(self._db, _LOCK_QUEUE, {"key": _QUEUE_LOCK_KEY})

    async def anyone_queued(self) -> bool:
        return bool(await fetch_value(self._db, _ANYONE_QUEUED))

    async def next_queued(self) -> Session | None:
        result = await self._db.execute(
            sa.select(sessions)
            .where(sessions.c.status == constant(SessionState.QUEUED.value))
            .order_by(sessions.c.priority_rank.desc(), sessions.c.created_at, sessions.c.id)
            .limit(1)
        )
        row = result.mappings().first()
        return session_from_row(row) if row else None

    async def totals(self) -> SessionTotals:
        counts = await self._db.execute(
            sa.select(sessions.c.status, sa.func.count()).group_by(sessions.c.status)
        )
        by_state = {state: 0 for state in SessionState}
        for status, count in counts.all():
            by_state[SessionState(status)] = int(count)
        sums = (
            await self._db.execute(
                sa.select(
                    sa.func.avg(sessions.c.duration_seconds),
                    sa.func.coalesce(sa.func.sum(sessions.c.tokens_used), 0),
                    sa.func.coalesce(sa.func.sum(sessions.c.cost_usd), 0.0),
                )
            )
        ).one()
        average = float(sums[0]) if sums[0] is not None else None
        return SessionTotals(by_state, average, int(sums[1]), float(sums[2]))

    async def next_checkpoint_seq(
        self, session_id: UUID, *, unless_in: Sequence[SessionState] = (), count: int = 1
    ) -> int | None:
        last = await fetch_value(
            self._db,
            _next_checkpoint_seq(self._db.dialect.name),
            {
                "session_id": session_id,
                "unless_in": [state.value for state in unless_in],
                "count": count,
            },
        )
        if last is not None:
            return int(last) - count + 1
        if unless_in and await fetch_value(self._db, _EXISTS, {"session_id": session_id}):
            return None
        raise LookupError(session_id)
