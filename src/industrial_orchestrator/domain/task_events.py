"""The events a task's life writes to the log (``task.*``), in its session's stream
when it belongs to one, else in the global stream."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .events import EventType, NewEvent
from .tasks import Task


def task_created(task: Task) -> NewEvent:
    return NewEvent(
        EventType.TASK_CREATED,
        task.created_at,
        task.session_id,
        {
            "task_id": str(task.id),
            "title": task.title,
            "task_type": task.task_type.value,
            "parent_id": str(task.parent_id) if task.parent_id else None,
            "depends_on": [str(d) for d in task.depends_on],
            "required_capabilities": list(task.required_capabilities),
            "estimated_effort": task.estimated_effort,
            "status": task.status.value,
        },
    )


def task_transition(before: Task, after: Task) -> NewEvent:
    return NewEvent(
        EventType.TASK_TRANSITION,
        after.updated_at,
        after.session_id,
        {
            "task_id": str(after.id),
            "from": before.status.value,
            "to": after.status.value,
            "version": after.version,
            "result_summary": after.result_summary,
        },
    )


def task_decomposed(
    task: Task, template: str, score: float, children: Sequence[Task], at: datetime
) -> NewEvent:
    return NewEvent(
        EventType.TASK_DECOMPOSED,
        at,
        task.session_id,
        {
            "task_id": str(task.id),
            "template": template,
            "score": score,
            "subtasks": [str(child.id) for child in children],
        },
    )


def task_dependency_added(task: Task, depends_on: Task, at: datetime) -> NewEvent:
    return NewEvent(
        EventType.TASK_DEPENDENCY_ADDED,
        at,
        task.session_id,
        {"task_id": str(task.id), "depends_on": str(depends_on.id)},
    )
