"""Where a running session's plan stands, and what moves it on: pure rules over its tasks.

* A PENDING task whose dependencies are all finished can start: a *leaf* becomes READY
  (agents pull it), a *summary* task (one split into subtasks) is closed at once, since
  its subtasks were its work.
* The plan is **done** when every task is finished (COMPLETED or SKIPPED).
* The plan is **stuck** when something is unfinished but nothing can move any more:
  nothing RUNNING or READY, and nothing PENDING that could start. That happens when a
  task failed for good (out of attempts) or was cancelled, holding back what depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ..tasks.task import FINISHED_STATUSES, Task, TaskStatus


class PlanState(StrEnum):
    WORKING = "working"
    DONE = "done"
    STUCK = "stuck"


@dataclass(frozen=True, slots=True)
class Progress:
    state: PlanState
    startable: list[Task]
    """PENDING leaves whose dependencies are finished: to be made READY."""
    closable: list[Task]
    """PENDING summary tasks whose subtasks (and other dependencies) are finished."""
    finished: list[Task]
    """Finished leaf tasks (the work), oldest first."""
    failed: list[Task]
    """Tasks that failed or were cancelled and will not run again."""
    total: int


def progress_of(tasks: Sequence[Task]) -> Progress:
    by_id = {task.id: task for task in tasks}
    parents = {task.parent_id for task in tasks if task.parent_id is not None}

    def deps_finished(task: Task) -> bool:
        return all(
            by_id[d].status in FINISHED_STATUSES if d in by_id else True for d in task.depends_on
        )

    pending_ready = [t for t in tasks if t.status == TaskStatus.PENDING and deps_finished(t)]
    startable = [t for t in pending_ready if t.id not in parents]
    closable = [t for t in pending_ready if t.id in parents]
    finished = sorted(
        (t for t in tasks if t.status in FINISHED_STATUSES and t.id not in parents),
        key=lambda t: (t.finished_at or t.updated_at, t.id),
    )
    failed = [t for t in tasks if t.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)]
    if tasks and all(t.status in FINISHED_STATUSES for t in tasks):
        state = PlanState.DONE
    elif (
        startable
        or closable
        or any(t.status in (TaskStatus.READY, TaskStatus.RUNNING) for t in tasks)
    ):
        state = PlanState.WORKING
    elif not tasks:
        state = PlanState.WORKING  # not planned yet
    else:
        state = PlanState.STUCK
    return Progress(state, startable, closable, finished, failed, len(tasks))
