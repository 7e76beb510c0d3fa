"""A stale write refused under the ``manual`` strategy, kept until an operator settles it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from .context import ContextConflict, Resolution
from .version_vectors import VersionVector


class ConflictStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    id: UUID
    context_id: UUID
    writer: str
    reason: str
    incoming: dict[str, Any]
    incoming_vector: VersionVector | None
    current_version: int
    """The context's version when the write was refused."""
    current_data: dict[str, Any]
    created_at: datetime
    status: ConflictStatus = ConflictStatus.OPEN
    resolution: Resolution | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None


def conflict_record(conflict_id: UUID, conflict: ContextConflict) -> ConflictRecord:
    return ConflictRecord(
        id=conflict_id,
        context_id=conflict.current.id,
        writer=conflict.writer,
        reason=conflict.reason,
        incoming=conflict.incoming,
        incoming_vector=conflict.seen_vector,
        current_version=conflict.current.version,
        current_data=conflict.current.data,
        created_at=conflict.at,
    )
