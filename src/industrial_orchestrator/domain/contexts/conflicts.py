"""A stale write refused under the ``manual`` strategy, kept until an operator settles it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from ..plain_values import identifier, moment, required_moment
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


def conflict_fields(record: ConflictRecord) -> dict[str, Any]:
    """The conflict as plain values, one per field and named after it (enums as their
    values, the incoming vector as a JSON object, ids and times as they are): the one
    mapping its database row and the API's schema are made from. An empty incoming vector
    is None, as the row and the API have always had it (it reads back as None: merging
    either into the context's vector is the same)."""
    return {
        "id": record.id,
        "context_id": record.context_id,
        "writer": record.writer,
        "reason": record.reason,
        "incoming": record.incoming,
        "incoming_vector": record.incoming_vector.to_json() if record.incoming_vector else None,
        "current_version": record.current_version,
        "current_data": record.current_data,
        "created_at": record.created_at,
        "status": record.status.value,
        "resolution": record.resolution.value if record.resolution is not None else None,
        "resolved_by": record.resolved_by,
        "resolved_at": record.resolved_at,
    }


def conflict_from_fields(fields: Mapping[str, Any]) -> ConflictRecord:
    """``conflict_fields`` read back, from a row or from JSON (as ``context_from_fields``)."""
    vector, resolution = fields["incoming_vector"], fields["resolution"]
    return ConflictRecord(
        id=identifier(fields["id"]),
        context_id=identifier(fields["context_id"]),
        writer=fields["writer"],
        reason=fields["reason"],
        incoming=dict(fields["incoming"]),
        incoming_vector=VersionVector.from_json(vector) if vector is not None else None,
        current_version=int(fields["current_version"]),
        current_data=dict(fields["current_data"]),
        created_at=required_moment(fields["created_at"]),
        status=ConflictStatus(fields["status"]),
        resolution=Resolution(resolution) if resolution else None,
        resolved_by=fields["resolved_by"],
        resolved_at=moment(fields["resolved_at"]),
    )


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
