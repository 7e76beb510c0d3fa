"""A stored conflict's one mapping to plain values (``conflict_fields``) and back: every
field, from a database row or from JSON text."""

from __future__ import annotations

import dataclasses
import json

from industrial_orchestrator.domain.contexts.conflicts import (
    ConflictRecord,
    ConflictStatus,
    conflict_fields,
    conflict_from_fields,
)
from industrial_orchestrator.domain.contexts.version_vectors import VersionVector

from ..context_builders import every_conflict_field_set


def test_every_field_is_mapped_and_read_back() -> None:
    record = every_conflict_field_set()
    fields = conflict_fields(record)
    assert set(fields) == {f.name for f in dataclasses.fields(ConflictRecord)}
    assert conflict_from_fields(fields) == record


def test_plain_values_only_enums_as_their_values_and_the_vector_as_an_object() -> None:
    fields = conflict_fields(every_conflict_field_set())
    assert (fields["status"], fields["resolution"]) == ("resolved", "custom")
    assert {type(fields["status"]), type(fields["resolution"])} == {str}
    assert fields["incoming_vector"] == {"ada": 1}


def test_read_back_from_json_text_and_from_zoneless_times() -> None:
    record = every_conflict_field_set()
    text = json.dumps(conflict_fields(record), default=str)
    assert conflict_from_fields(json.loads(text)) == record
    # SQLite gives times back without their zone: they are UTC.
    naive = {
        name: getattr(record, name).replace(tzinfo=None) for name in ("created_at", "resolved_at")
    }
    assert conflict_from_fields(conflict_fields(record) | naive) == record


def test_an_open_conflict_and_an_empty_incoming_vector_are_none() -> None:
    # As the row and the API have always had them.
    record = dataclasses.replace(
        every_conflict_field_set(),
        status=ConflictStatus.OPEN,
        resolution=None,
        resolved_by=None,
        resolved_at=None,
        incoming_vector=VersionVector(),
    )
    fields = conflict_fields(record)
    assert (fields["status"], fields["resolution"], fields["incoming_vector"]) == (
        "open",
        None,
        None,
    )
    assert conflict_from_fields(fields) == dataclasses.replace(record, incoming_vector=None)
