"""Plain values read back into a record's fields: what a database row or JSON text gives
for an id or a time. Shared by the records' mappings (``agent_from_fields``,
``task_from_fields``)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID


def moment(value: datetime | str | None) -> datetime | None:
    """A time as it is, or from ISO text; one without a zone is UTC (SQLite gives them
    back so)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def required_moment(value: datetime | str) -> datetime:
    """``moment`` of a time that is always there."""
    result = moment(value)
    assert result is not None
    return result


def identifier(value: UUID | str) -> UUID:
    """An id as it is, or from its text."""
    return value if isinstance(value, UUID) else UUID(str(value))


def optional_identifier(value: UUID | str | None) -> UUID | None:
    return None if value is None else identifier(value)
