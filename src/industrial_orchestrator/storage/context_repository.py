"""Contexts and their stored conflicts, with guarded (versioned) updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.contexts.conflicts import (
    ConflictRecord,
    ConflictStatus,
    conflict_fields,
    conflict_from_fields,
)
from ..domain.contexts.context import Context, ContextScope, context_fields, context_from_fields
from .commit_writes import CommitWrites
from .direct_execution import run
from .tables import context_conflicts, contexts

# Built once (run with every result): a built statement keeps its cache key.
_DELETE_TEMPORARY_OF = sa.delete(contexts).where(
    contexts.c.scope == ContextScope.TEMPORARY.value,
    contexts.c.owner_id == sa.bindparam("task_id"),
)


class SqlContextRepository:
    def __init__(self, connection: AsyncConnection, writes: CommitWrites | None = None) -> None:
        self._db = connection
        self._writes = writes

    async def add(self, context: Context) -> None:
        await self._db.execute(sa.insert(contexts).values(_values(context)))

    async def get(self, context_id: UUID) -> Context | None:
        result = await self._db.execute(sa.select(contexts).where(contexts.c.id == context_id))
        row = result.mappings().first()
        return _context(row) if row else None

    async def find(
        self, *, scope: ContextScope | None, owner_ids: Sequence[UUID] = ()
    ) -> list[Context]:
        conditions: list[Any] = []
        if scope is not None:
            conditions.append(contexts.c.scope == scope.value)
        if owner_ids:
            conditions.append(contexts.c.owner_id.in_(list(owner_ids)))
        result = await self._db.execute(
            sa.select(contexts).where(*conditions).order_by(contexts.c.created_at, contexts.c.id)
        )
        return [_context(row) for row in result.mappings()]

    async def save(self, before: Context, after: Context) -> bool:
        result = await self._db.execute(
            sa.update(contexts)
            .where(contexts.c.id == before.id, contexts.c.version == before.version)
            .values(_values(after))
        )
        return result.rowcount == 1

    async def delete_expired(self, now: datetime) -> int:
        result = await self._db.execute(
            sa.delete(contexts).where(
                contexts.c.expires_at.is_not(None), contexts.c.expires_at <= now
            )
        )
        return int(result.rowcount or 0)

    async def delete_temporary_of(self, task_id: UUID) -> int:
        return max(0, await run(self._db, _DELETE_TEMPORARY_OF, {"task_id": task_id}))

    async def delete_temporary_at_commit(self, task_id: UUID) -> None:
        assert self._writes is not None, "a unit of work's repository keeps writes"
        params = {"task_id": task_id}
        await self._writes.add(("temporary", task_id), _DELETE_TEMPORARY_OF, params, stale=None)

    async def add_conflict(self, record: ConflictRecord) -> None:
        await self._db.execute(sa.insert(context_conflicts).values(_conflict_values(record)))

    async def conflict(self, conflict_id: UUID) -> ConflictRecord | None:
        result = await self._db.execute(
            sa.select(context_conflicts).where(context_conflicts.c.id == conflict_id)
        )
        row = result.mappings().first()
        return _conflict(row) if row else None

    async def conflicts(
        self, context_id: UUID, status: ConflictStatus | None
    ) -> list[ConflictRecord]:
        conditions: list[Any] = [context_conflicts.c.context_id == context_id]
        if status is not None:
            conditions.append(context_conflicts.c.status == status.value)
        result = await self._db.execute(
            sa.select(context_conflicts)
            .where(*conditions)
            .order_by(context_conflicts.c.created_at, context_conflicts.c.id)
        )
        return [_conflict(row) for row in result.mappings()]

    async def settle(self, record: ConflictRecord) -> bool:
        """Mark an open conflict resolved; False if someone settled it first."""
        result = await self._db.execute(
            sa.update(context_conflicts)
            .where(
                context_conflicts.c.id == record.id,
                context_conflicts.c.status == ConflictStatus.OPEN.value,
            )
            .values(
                status=ConflictStatus.RESOLVED.value,
                resolution=record.resolution.value if record.resolution else None,
                resolved_by=record.resolved_by,
                resolved_at=record.resolved_at,
            )
        )
        return result.rowcount == 1


def _values(context: Context) -> dict[str, Any]:
    # The columns are the record's fields.
    return context_fields(context)


def _context(row: RowMapping) -> Context:
    return context_from_fields(cast("Mapping[str, Any]", row))


def _conflict_values(record: ConflictRecord) -> dict[str, Any]:
    # The columns are the record's fields.
    return conflict_fields(record)


def _conflict(row: RowMapping) -> ConflictRecord:
    return conflict_from_fields(cast("Mapping[str, Any]", row))
