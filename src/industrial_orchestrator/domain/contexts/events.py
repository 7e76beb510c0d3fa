"""The events a context's life writes to the log (``context.*``): in its session's stream
for a SESSION context, else in the global stream. They carry ids, versions and who wrote,
not the data (which may be large, and is one GET away)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ..events import EventType, NewEvent
from .conflicts import ConflictRecord
from .context import Context, ContextScope


def _stream(context: Context) -> UUID | None:
    return context.owner_id if context.scope == ContextScope.SESSION else None


def context_created(context: Context) -> NewEvent:
    return NewEvent(
        EventType.CONTEXT_CREATED,
        context.created_at,
        _stream(context),
        {
            "context_id": str(context.id),
            "scope": context.scope.value,
            "owner_id": str(context.owner_id) if context.owner_id else None,
            "name": context.name,
            "critical": context.critical,
        },
    )


def context_updated(context: Context, writer: str, strategy: str, stale: bool) -> NewEvent:
    return NewEvent(
        EventType.CONTEXT_UPDATED,
        context.updated_at,
        _stream(context),
        {
            "context_id": str(context.id),
            "version": context.version,
            "writer": writer,
            "strategy": strategy,
            "stale": stale,
        },
    )


def context_conflict(context: Context, record: ConflictRecord) -> NewEvent:
    return NewEvent(
        EventType.CONTEXT_CONFLICT,
        record.created_at,
        _stream(context),
        {
            "context_id": str(context.id),
            "conflict_id": str(record.id),
            "writer": record.writer,
            "current_version": record.current_version,
        },
    )


def context_resolved(context: Context, record: ConflictRecord, at: datetime) -> NewEvent:
    return NewEvent(
        EventType.CONTEXT_RESOLVED,
        at,
        _stream(context),
        {
            "context_id": str(context.id),
            "conflict_id": str(record.id),
            "resolution": record.resolution.value if record.resolution else None,
            "resolved_by": record.resolved_by,
            "version": context.version,
        },
    )
