"""The attempts in flight of a session's tasks, read at once."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from ..domain.tasks.attempts import TaskAttempt
from ..domain.tasks.task import Task, TaskStatus
from .ports import UnitOfWork


async def running_attempts(uow: UnitOfWork, tasks: Sequence[Task]) -> dict[UUID, TaskAttempt]:
    """The open current attempt of each RUNNING task, by task id: one read for all of
    them (a step looks at every running task of its session, several times a task)."""
    current = {t.id: t.attempt for t in tasks if t.status == TaskStatus.RUNNING and t.attempt}
    if not current:
        return {}
    return {
        attempt.task_id: attempt
        for attempt in await uow.attempts.open_of_tasks(list(current))
        if attempt.attempt == current[attempt.task_id]
    }
