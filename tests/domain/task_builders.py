"""A task with every field set, for the tests of its mappings."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from industrial_orchestrator.domain.tasks.task import Task, TaskStatus, TaskType

from .record_builders import no_field_at_default


def every_field_set() -> Task:
    """A task with no field at its default."""
    values = {
        "id": uuid4(),
        "title": "Implement the invoices repository",
        "description": "CRUD for invoices",
        "task_type": TaskType.TESTING,
        "required_capabilities": ("python", "testing"),
        "estimated_effort": 2.5,
        "status": TaskStatus.FAILED,
        "created_at": datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC),
        "updated_at": datetime(2026, 12, 6, 5, 0, tzinfo=UTC),
        "session_id": uuid4(),
        "parent_id": uuid4(),
        "depends_on": tuple(sorted((uuid4(), uuid4()))),
        "template": "crud",
        "result_summary": "the tests fail",
        "started_at": datetime(2026, 12, 6, 4, 5, 6, tzinfo=UTC),
        "finished_at": datetime(2026, 12, 6, 4, 59, tzinfo=UTC),
        "attempt": 2,
        "version": 7,
        "files": ("src/invoices/", "tests/test_invoices.py"),
    }
    return no_field_at_default(Task, values)
