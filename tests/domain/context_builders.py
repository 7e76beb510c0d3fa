"""A context and a conflict with every field set, for the tests of their mappings."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from industrial_orchestrator.domain.contexts.conflicts import ConflictRecord, ConflictStatus
from industrial_orchestrator.domain.contexts.context import Context, ContextScope, Resolution
from industrial_orchestrator.domain.contexts.version_vectors import VersionVector

from .record_builders import no_field_at_default


def every_context_field_set() -> Context:
    """A context with no field at its default (TEMPORARY: the one scope that expires)."""
    return no_field_at_default(
        Context,
        {
            "id": uuid4(),
            "scope": ContextScope.TEMPORARY,
            "owner_id": uuid4(),
            "name": "plan",
            "data": {"steps": [1, {"b": None}], "done": False, "ratio": 0.5},
            "created_at": datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC),
            "updated_at": datetime(2026, 12, 6, 4, 5, 6, tzinfo=UTC),
            "version": 4,
            "vector": VersionVector({"ada": 2, "operator": 1}),
            "critical": True,
            "expires_at": datetime(2026, 12, 7, 1, 0, tzinfo=UTC),
            "last_writer": "ada",
        },
    )


def every_conflict_field_set() -> ConflictRecord:
    """A settled conflict with no field at its default."""
    return no_field_at_default(
        ConflictRecord,
        {
            "id": uuid4(),
            "context_id": uuid4(),
            "writer": "ada",
            "reason": "expected version 2, context is at version 3",
            "incoming": {"step": 2, "notes": ["a"]},
            "incoming_vector": VersionVector({"ada": 1}),
            "current_version": 3,
            "current_data": {"step": 1},
            "created_at": datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC),
            "status": ConflictStatus.RESOLVED,
            "resolution": Resolution.CUSTOM,
            "resolved_by": "operator",
            "resolved_at": datetime(2026, 12, 6, 4, 5, 6, tzinfo=UTC),
        },
    )
