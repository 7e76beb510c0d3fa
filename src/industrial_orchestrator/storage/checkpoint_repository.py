"""Checkpoints, newest first, pruned to the retention limit."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.sessions.checkpoint import Checkpoint
from .direct_execution import fetch_first, run
from .rows import checkpoint_from_row, checkpoint_values
from .tables import checkpoints

# Built once (read on every engine step): a built statement keeps its cache key.
_LATEST = (
    sa.select(checkpoints)
    .where(checkpoints.c.session_id == sa.bindparam("session_id"))
    .order_by(checkpoints.c.seq.desc())
    .limit(1)
)
_INSERT = sa.insert(checkpoints)


class SqlCheckpointRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._db = connection

    async def add(self, checkpoint: Checkpoint) -> None:
        await run(self._db, _INSERT, checkpoint_values(checkpoint))

    async def prune(self, session_id: UUID, keep_from_seq: int) -> int:
        result = await self._db.execute(
            sa.delete(checkpoints).where(
                checkpoints.c.session_id == session_id, checkpoints.c.seq < keep_from_seq
            )
        )
        return int(result.rowcount or 0)

    async def get(self, checkpoint_id: UUID) -> Checkpoint | None:
        result = await self._db.execute(
            sa.select(checkpoints).where(checkpoints.c.id == checkpoint_id)
        )
        row = result.mappings().first()
        return checkpoint_from_row(row) if row else None

    async def latest(self, session_id: UUID) -> Checkpoint | None:
        row = await fetch_first(self._db, _LATEST, {"session_id": session_id})
        return checkpoint_from_row(row) if row else None

    async def list(self, session_id: UUID, offset: int, limit: int) -> tuple[list[Checkpoint], int]:
        total = await self._db.scalar(
            sa.select(sa.func.count())
            .select_from(checkpoints)
            .where(checkpoints.c.session_id == session_id)
        )
        result = await self._db.execute(
            sa.select(checkpoints)
            .where(checkpoints.c.session_id == session_id)
            .order_by(checkpoints.c.seq.desc())
            .offset(offset)
            .limit(limit)
        )
        return [checkpoint_from_row(row) for row in result.mappings()], int(total or 0)
