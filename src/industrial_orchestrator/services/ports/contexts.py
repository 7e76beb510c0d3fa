"""Shared contexts and their conflicts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from ...domain.contexts.conflicts import ConflictRecord, ConflictStatus
from ...domain.contexts.context import Context, ContextScope


class ContextRepository(Protocol):
    async def add(self, context: Context) -> None: ...

    async def get(self, context_id: UUID) -> Context | None: ...

    async def find(
        self, *, scope: ContextScope | None, owner_ids: Sequence[UUID] = ()
    ) -> list[Context]: ...

    async def save(self, before: Context, after: Context) -> bool:
        """Guarded write: False when the row is no longer at ``before.version``."""

    async def delete_expired(self, now: datetime) -> int: ...

    async def delete_temporary_of(self, task_id: UUID) -> int: ...

    async def delete_temporary_at_commit(self, task_id: UUID) -> None:
        """``delete_temporary_of``, kept for the commit where that saves a round trip
        (see ``TaskRepository.save_at_commit``)."""

    async def add_conflict(self, record: ConflictRecord) -> None: ...

    async def conflict(self, conflict_id: UUID) -> ConflictRecord | None: ...

    async def conflicts(
        self, context_id: UUID, status: ConflictStatus | None
    ) -> list[ConflictRecord]: ...

    async def settle(self, record: ConflictRecord) -> bool:
        """Mark an open conflict resolved; False if it was settled already."""
