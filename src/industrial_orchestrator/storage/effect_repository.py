"""The side-effect ledger's rows (``domain.effects``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.effects import Effect, EffectKind, EffectState
from .database import storable_json_text
from .direct_execution import fetch_all, fetch_value, run
from .listed import one_of
from .rows import utc
from .tables import effects
from .written_constants import constant

# The hot writes, built once: a built statement keeps its cache key.
_FINISH = sa.update(effects).where(
    effects.c.key == sa.bindparam("w_key"), effects.c.state == constant(EffectState.PENDING.value)
)


_PENDING_OF_SESSION = (
    sa.select(effects)
    .where(
        effects.c.state == constant(EffectState.PENDING.value),
        effects.c.session_id == sa.bindparam("session_id", type_=sa.Uuid),
    )
    .order_by(effects.c.created_at, effects.c.key)
)


@functools.cache
def _insert_new(dialect: str) -> Any:
    insert = postgresql.insert(effects) if dialect == "postgresql" else sqlite.insert(effects)
    return insert.on_conflict_do_nothing(index_elements=["key"]).returning(effects.c.key)


# PostgreSQL: several entries in one statement, atomic without a transaction around it;
# the rows come as arrays, so the text is the same whatever their number.
_ROWS_PARAMETERS = (
    sa.bindparam("keys", type_=ARRAY(sa.String)),
    sa.bindparam("kinds", type_=ARRAY(sa.String)),
    sa.bindparam("session_ids", type_=ARRAY(sa.Uuid)),
    sa.bindparam("task_ids", type_=ARRAY(sa.Uuid)),
    sa.bindparam("states", type_=ARRAY(sa.String)),
    sa.bindparam("details", type_=ARRAY(sa.Text)),
    sa.bindparam("created_ats", type_=ARRAY(sa.DateTime(timezone=True))),
    sa.bindparam("done_ats", type_=ARRAY(sa.DateTime(timezone=True))),
)


def _insert_new_rows(condition: str = "") -> Any:
    return sa.text(
        "INSERT INTO effects (key, kind, session_id, task_id, state, detail, created_at, done_at) "
        "SELECT new.key, new.kind, new.session_id, new.task_id, new.state, "
        "CAST(new.detail AS JSONB), new.created_at, new.done_at "
        "FROM unnest(:keys, :kinds, :session_ids, :task_ids, :states, :details, :created_ats, "
        ":done_ats) AS new(key, kind, session_id, task_id, state, detail, created_at, done_at) "
        f"{condition}"
        "ORDER BY new.key "
        "ON CONFLICT (key) DO NOTHING RETURNING key"
    ).bindparams(*_ROWS_PARAMETERS)


_INSERT_NEW_ROWS = _insert_new_rows()
# The same, unless the session has files still to be written: asked in the statement, so
# a checkpoint's promise and the look for unwritten files are one round trip.
_INSERT_NEW_ROWS_UNLESS_WRITES_PENDING = _insert_new_rows(
    "WHERE NOT EXISTS (SELECT 1 FROM effects AS write WHERE write.session_id = :writer "
    f"AND write.state = '{EffectState.PENDING.value}' "
    f"AND write.kind = '{EffectKind.WORKSPACE_WRITE.value}') "
).bindparams(sa.bindparam("writer", type_=sa.Uuid))


@functools.cache
def _with_pending_writes(dialect: str) -> Any:
    among = one_of(effects.c.session_id, "session_ids", sa.Uuid, dialect)
    return (
        sa.select(effects.c.session_id)
        .where(
            effects.c.state == constant(EffectState.PENDING.value),
            effects.c.kind == constant(EffectKind.WORKSPACE_WRITE.value),
            among,
        )
        .distinct()
    )


class SqlEffectRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._db = connection

    async def record(self, effect: Effect) -> tuple[Effect, bool]:
        """Insert ``effect`` unless its key is taken; the entry stored under the key, and
        whether it is the one just inserted."""
        inserted = await fetch_value(
            self._db,
            _insert_new(self._db.dialect.name),
            {
                "key": effect.key,
                "kind": effect.kind.value,
                "session_id": effect.session_id,
                "task_id": effect.task_id,
                "state": effect.state.value,
                "detail": effect.detail,
                "created_at": effect.created_at,
                "done_at": effect.done_at,
            },
        )
        if inserted is not None:
            return effect, True
        stored = await self.get(effect.key)
        assert stored is not None  # the key is taken
        return stored, False

    async def record_all(
        self, effects: Sequence[Effect], *, unless_writes_pending: UUID | None = None
    ) -> list[tuple[Effect, bool]] | None:
        if self._db.dialect.name != "postgresql":
            # SQLite: the caller's transaction holds the database's write lock already.
            if unless_writes_pending is not None and await self.sessions_with_pending_writes(
                [unless_writes_pending]
            ):
                return None
            return [await self.record(effect) for effect in effects]
        if unless_writes_pending is None and len(effects) < 2:
            return [await self.record(effect) for effect in effects]
        statement = _INSERT_NEW_ROWS
        guard: dict[str, Any] = {}
        if unless_writes_pending is not None:
            statement = _INSERT_NEW_ROWS_UNLESS_WRITES_PENDING
            guard["writer"] = unless_writes_pending
        rows = await fetch_all(
            self._db,
            statement,
            {
                **guard,
                "keys": [e.key for e in effects],
                "kinds": [e.kind.value for e in effects],
                "session_ids": [e.session_id for e in effects],
                "task_ids": [e.task_id for e in effects],
                "states": [e.state.value for e in effects],
                "details": [storable_json_text(e.detail) for e in effects],
                "created_ats": [e.created_at for e in effects],
                "done_ats": [e.done_at for e in effects],
            },
        )
        inserted = {row["key"] for row in rows}
        recorded: list[tuple[Effect, bool]] = []
        for effect in effects:
            if effect.key in inserted:
                inserted.discard(effect.key)  # a key given twice: the first is the new one
                recorded.append((effect, True))
                continue
            stored = await self.get(effect.key)
            if stored is None:
                # Not inserted, yet its key is free: only the guard can have said no.
                assert unless_writes_pending is not None
                assert not rows
                return None
            recorded.append((stored, False))
        return recorded

    async def get(self, key: str) -> Effect | None:
        result = await self._db.execute(sa.select(effects).where(effects.c.key == key))
        row = result.mappings().first()
        return _effect(row) if row else None

    async def finish(self, effect: Effect) -> bool:
        """Mark a PENDING entry DONE with ``effect``'s detail; False when it was not
        PENDING (someone else finished it)."""
        done = {
            "w_key": effect.key,
            "state": EffectState.DONE.value,
            "detail": effect.detail,
            "done_at": effect.done_at,
        }
        return await run(self._db, _FINISH, done) == 1

    async def pending(
        self, *, created_before: datetime | None = None, session_id: UUID | None = None
    ) -> list[Effect]:
        if session_id is not None and created_before is None:
            # A session's checkpoints ask before each one they take: built once.
            rows = await fetch_all(self._db, _PENDING_OF_SESSION, {"session_id": session_id})
            return [_effect(row) for row in rows]
        query = (
            sa.select(effects)
            .where(effects.c.state == constant(EffectState.PENDING.value))
            .order_by(effects.c.created_at, effects.c.key)
        )
        if created_before is not None:
            query = query.where(effects.c.created_at <= created_before)
        if session_id is not None:
            query = query.where(effects.c.session_id == session_id)
        result = await self._db.execute(query)
        return [_effect(row) for row in result.mappings()]

    async def sessions_with_pending_writes(self, session_ids: Sequence[UUID]) -> set[UUID]:
        if not session_ids:
            return set()
        query = _with_pending_writes(self._db.dialect.name)
        rows = await fetch_all(self._db, query, {"session_ids": list(session_ids)})
        return {row["session_id"] for row in rows}

    async def of_session(
        self, session_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Effect], int]:
        where = effects.c.session_id == session_id
        total = await self._db.scalar(sa.select(sa.func.count()).select_from(effects).where(where))
        result = await self._db.execute(
            sa.select(effects)
            .where(where)
            .order_by(effects.c.created_at, effects.c.key)
            .offset(offset)
            .limit(limit)
        )
        return [_effect(row) for row in result.mappings()], int(total or 0)


def _effect(row: Mapping[Any, Any]) -> Effect:
    detail: Any = row["detail"]
    return Effect(
        key=row["key"],
        kind=EffectKind(row["kind"]),
        session_id=row["session_id"],
        task_id=row["task_id"],
        state=EffectState(row["state"]),
        detail=dict(detail or {}),
        created_at=utc(row["created_at"]),
        done_at=utc(row["done_at"]),
    )
