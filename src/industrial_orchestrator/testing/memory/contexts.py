"""Contexts and their stored conflicts (``storage/context_repository.py`` in memory).
Deleting a context deletes its conflicts, as the foreign key's cascade does."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from ...domain.contexts.conflicts import ConflictRecord, ConflictStatus
from ...domain.contexts.context import Context, ContextScope
from .store import IntegrityViolation, Transaction, json_copy

CONTEXTS = "contexts"
CONFLICTS = "context_conflicts"


def _context(context: Context) -> Context:
    return context.evolve(data=json_copy(context.data))


def _conflict(record: ConflictRecord) -> ConflictRecord:
    return dataclasses.replace(
        record, incoming=json_copy(record.incoming), current_data=json_copy(record.current_data)
    )


class MemoryContextRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def add(self, context: Context) -> None:
        if self._tx.get(CONTEXTS, context.id) is not None:
            raise IntegrityViolation(f"context {context.id} exists")
        self._tx.put(CONTEXTS, context.id, _context(context))

    async def get(self, context_id: UUID) -> Context | None:
        found: Context | None = self._tx.get(CONTEXTS, context_id)
        return _context(found) if found else None

    async def find(
        self, *, scope: ContextScope | None, owner_ids: Sequence[UUID] = ()
    ) -> list[Context]:
        owners = set(owner_ids)
        found: list[Context] = self._tx.select(
            CONTEXTS,
            lambda context: (
                (scope is None or context.scope is scope)
                and (not owners or context.owner_id in owners)
            ),
        )
        found.sort(key=lambda context: (context.created_at, context.id))
        return [_context(context) for context in found]

    async def save(self, before: Context, after: Context) -> bool:
        current: Context | None = self._tx.get(CONTEXTS, before.id)
        if current is None or current.version != before.version:
            return False
        # Every column is written, the id too (as the SQL UPDATE's values).
        if after.id != before.id:
            self._tx.delete(CONTEXTS, before.id)
        self._tx.put(CONTEXTS, after.id, _context(after))
        return True

    def _delete(self, doomed: list[Context]) -> int:
        ids = {context.id for context in doomed}
        for record in self._tx.select(CONFLICTS, lambda record: record.context_id in ids):
            self._tx.delete(CONFLICTS, record.id)
        for context_id in ids:
            self._tx.delete(CONTEXTS, context_id)
        return len(ids)

    async def delete_expired(self, now: datetime) -> int:
        return self._delete(
            self._tx.select(
                CONTEXTS,
                lambda context: context.expires_at is not None and context.expires_at <= now,
            )
        )

    async def delete_temporary_of(self, task_id: UUID) -> int:
        return self._delete(
            self._tx.select(
                CONTEXTS,
                lambda context: (
                    context.scope is ContextScope.TEMPORARY and context.owner_id == task_id
                ),
            )
        )

    async def delete_temporary_at_commit(self, task_id: UUID) -> None:
        # In process a write costs no round trip: it runs at once.
        await self.delete_temporary_of(task_id)

    async def add_conflict(self, record: ConflictRecord) -> None:
        if self._tx.get(CONFLICTS, record.id) is not None:
            raise IntegrityViolation(f"conflict {record.id} exists")
        if self._tx.get(CONTEXTS, record.context_id) is None:
            raise IntegrityViolation(f"conflict of unknown context {record.context_id}")
        self._tx.put(CONFLICTS, record.id, _conflict(record))

    async def conflict(self, conflict_id: UUID) -> ConflictRecord | None:
        found: ConflictRecord | None = self._tx.get(CONFLICTS, conflict_id)
        return _conflict(found) if found else None

    async def conflicts(
        self, context_id: UUID, status: ConflictStatus | None
    ) -> list[ConflictRecord]:
        found: list[ConflictRecord] = self._tx.select(
            CONFLICTS,
            lambda record: (
                record.context_id == context_id and (status is None or record.status is status)
            ),
        )
        found.sort(key=lambda record: (record.created_at, record.id))
        return [_conflict(record) for record in found]

    async def settle(self, record: ConflictRecord) -> bool:
        current: ConflictRecord | None = self._tx.get(CONFLICTS, record.id)
        if current is None or current.status is not ConflictStatus.OPEN:
            return False
        # Only the settling columns are written (as the SQL UPDATE's values).
        settled = dataclasses.replace(
            current,
            status=ConflictStatus.RESOLVED,
            resolution=record.resolution,
            resolved_by=record.resolved_by,
            resolved_at=record.resolved_at,
        )
        self._tx.put(CONFLICTS, record.id, settled)
        return True
