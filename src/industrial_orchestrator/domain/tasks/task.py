"""The task: one unit of a session's plan, and the table that moves it from status to status.

A session's prompt is decomposed into tasks (``planning``); the tasks form a
dependency graph (``task_graph``); each task is routed to an agent by its type and its
required capabilities. Like the session, a task is a frozen record: ``task_transition``
returns the moved task and the service stores it under a version guard.

Decisions:

* FAILED is **not** terminal: a failed task may go back to READY for another attempt
  (the lease's ``attempt`` counts them), or be CANCELLED for good. ``finished_at`` is
  nevertheless set when a task fails (its attempt ended) and cleared when it is retried.
* Terminal statuses are COMPLETED, SKIPPED and CANCELLED: nothing leaves them.
* A dependency is *finished* when it is COMPLETED or SKIPPED; a skipped task was judged
  unnecessary, so it does not hold back the tasks after it. A FAILED or CANCELLED
  dependency is not finished: its dependants stay blocked until someone decides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from ..errors import IllegalTransition, InvalidInput
from ..plain_values import identifier, moment, optional_identifier, required_moment
from .file_conflicts import planned_files


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


class TaskType(StrEnum):
    """What kind of work a task is; agents declare the types they handle."""

    DESIGN = "design"
    CODE_GENERATION = "code_generation"
    TESTING = "testing"
    REVIEW = "review"
    SECURITY_AUDIT = "security_audit"
    DOCUMENTATION = "documentation"
    DEPLOYMENT = "deployment"
    RESEARCH = "research"


T = TaskStatus

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.PENDING: frozenset({T.READY, T.CANCELLED, T.SKIPPED}),
    # READY -> PENDING: a dependency was reopened (e.g. a new edge to an unfinished task).
    T.READY: frozenset({T.RUNNING, T.PENDING, T.CANCELLED, T.SKIPPED}),
    T.RUNNING: frozenset({T.COMPLETED, T.FAILED, T.CANCELLED}),
    T.FAILED: frozenset({T.READY, T.CANCELLED}),
    T.COMPLETED: frozenset(),
    T.SKIPPED: frozenset(),
    T.CANCELLED: frozenset(),
}

TERMINAL_STATUSES = frozenset({T.COMPLETED, T.SKIPPED, T.CANCELLED})

# A dependency in one of these no longer holds its dependants back.
FINISHED_STATUSES = frozenset({T.COMPLETED, T.SKIPPED})

# Tasks that have not started yet and may be started once their dependencies are finished.
WAITING_STATUSES = frozenset({T.PENDING, T.READY})


def can_transition(source: TaskStatus, target: TaskStatus) -> bool:
    """Whether ``source -> target`` is in the task transition table."""
    return target in TASK_TRANSITIONS[source]


def allowed_targets(source: TaskStatus) -> list[TaskStatus]:
    """The statuses reachable from ``source``, in declaration order."""
    return [s for s in TaskStatus if s in TASK_TRANSITIONS[source]]


def is_terminal(status: TaskStatus) -> bool:
    return status in TERMINAL_STATUSES


def is_finished(status: TaskStatus) -> bool:
    """Whether a dependency in ``status`` lets its dependants start (COMPLETED or SKIPPED)."""
    return status in FINISHED_STATUSES


def normalise_capabilities(values: Iterable[str]) -> tuple[str, ...]:
    """Lower-case, strip, de-duplicate and sort capability names.

    Raises ``InvalidInput`` for a name that is empty once stripped.
    """
    normalised: set[str] = set()
    for value in values:
        name = value.strip().lower()
        if not name:
            raise InvalidInput(
                "capability names must not be empty",
                {"field": "required_capabilities", "value": value},
            )
        normalised.add(name)
    return tuple(sorted(normalised))


@dataclass(frozen=True, slots=True)
class Task:
    id: UUID
    title: str
    description: str
    task_type: TaskType
    required_capabilities: tuple[str, ...]
    estimated_effort: float
    """Hours; always > 0."""
    status: TaskStatus
    created_at: datetime
    updated_at: datetime
    session_id: UUID | None = None
    parent_id: UUID | None = None
    depends_on: tuple[UUID, ...] = ()
    """Ids of the tasks that must be finished (COMPLETED or SKIPPED) before this one starts."""
    template: str | None = None
    result_summary: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempt: int = 0
    """The number of the latest attempt (lease) at the task; 0 before the first."""
    version: int = 1
    files: tuple[str, ...] = ()
    """Workspace paths (a directory ends with ``/``) the plan expects the task to edit:
    tasks of one session that would edit the same files are not run at once."""

    def evolve(self, **changes: Any) -> Task:
        return dataclasses.replace(self, **changes)

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)


def task_fields(task: Task) -> dict[str, Any]:
    """The task as plain values, one per field and named after it (enums as their values,
    tuples as lists, ids and times as they are): the one mapping its database row and the
    API's schema are made from, so a field added to ``Task`` reaches both."""
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "task_type": task.task_type.value,
        "required_capabilities": list(task.required_capabilities),
        "estimated_effort": task.estimated_effort,
        "status": task.status.value,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "session_id": task.session_id,
        "parent_id": task.parent_id,
        "depends_on": list(task.depends_on),
        "template": task.template,
        "result_summary": task.result_summary,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "attempt": task.attempt,
        "version": task.version,
        "files": list(task.files),
    }


def task_from_fields(fields: Mapping[str, Any]) -> Task:
    """``task_fields`` read back, from a row or from JSON: ids and times may come as text,
    and a time without a zone is UTC (SQLite gives them back so)."""
    return Task(
        id=identifier(fields["id"]),
        title=fields["title"],
        description=fields["description"],
        task_type=TaskType(fields["task_type"]),
        required_capabilities=tuple(fields["required_capabilities"]),
        estimated_effort=float(fields["estimated_effort"]),
        status=TaskStatus(fields["status"]),
        created_at=required_moment(fields["created_at"]),
        updated_at=required_moment(fields["updated_at"]),
        session_id=optional_identifier(fields["session_id"]),
        parent_id=optional_identifier(fields["parent_id"]),
        depends_on=tuple(identifier(d) for d in fields["depends_on"] or ()),
        template=fields["template"],
        result_summary=fields["result_summary"],
        started_at=moment(fields["started_at"]),
        finished_at=moment(fields["finished_at"]),
        attempt=int(fields["attempt"]),
        version=int(fields["version"]),
        files=tuple(fields["files"] or ()),
    )


def new_task(
    *,
    id: UUID,
    title: str,
    description: str,
    task_type: TaskType,
    required_capabilities: Iterable[str],
    estimated_effort: float,
    now: datetime,
    session_id: UUID | None = None,
    parent_id: UUID | None = None,
    depends_on: Iterable[UUID] = (),
    template: str | None = None,
    files: Iterable[str] = (),
) -> Task:
    """A new PENDING task, its inputs checked and its capabilities normalised.

    Raises ``InvalidInput`` for an empty title, a non-positive effort, an empty capability
    name, or a task that depends on itself. Dependencies are kept once each, in id order
    (the order they are stored and read back in).
    """
    title = title.strip()
    if not title:
        raise InvalidInput("a task needs a title", {"field": "title"})
    if not estimated_effort > 0:
        raise InvalidInput(
            "estimated_effort must be a positive number of hours",
            {"field": "estimated_effort", "value": estimated_effort},
        )
    deps = tuple(sorted(set(depends_on)))
    if id in deps:
        raise InvalidInput(
            f"task {id} cannot depend on itself", {"field": "depends_on", "task_id": str(id)}
        )
    return Task(
        id=id,
        title=title,
        description=description,
        task_type=task_type,
        required_capabilities=normalise_capabilities(required_capabilities),
        estimated_effort=float(estimated_effort),
        status=TaskStatus.PENDING,
        created_at=now,
        updated_at=now,
        session_id=session_id,
        parent_id=parent_id,
        depends_on=deps,
        template=template,
        files=planned_files(files),
    )


def task_transition(
    task: Task, target: TaskStatus, *, now: datetime, summary: str | None = None
) -> Task:
    """Move ``task`` to ``target`` or raise ``IllegalTransition``.

    The version goes up by one; ``started_at`` is set on the first entry into RUNNING;
    ``finished_at`` is set on entering a terminal status or FAILED, and cleared when a
    failed task is retried. ``summary``, when given, replaces ``result_summary``.
    """
    if not can_transition(task.status, target):
        raise illegal_task_transition(task, target)
    ended = is_terminal(target) or target == TaskStatus.FAILED
    return task.evolve(
        status=target,
        version=task.version + 1,
        updated_at=now,
        started_at=task.started_at or (now if target == TaskStatus.RUNNING else None),
        finished_at=now if ended else None,
        result_summary=summary if summary is not None else task.result_summary,
    )


def illegal_task_transition(task: Task, target: TaskStatus) -> IllegalTransition:
    allowed = [s.value for s in allowed_targets(task.status)]
    return IllegalTransition(
        f"Cannot move task {task.id}: {task.status.value} -> {target.value} is not allowed "
        f"(allowed from {task.status.value}: {', '.join(allowed) or 'none'})",
        {
            "task_id": str(task.id),
            "current_state": task.status.value,
            "requested_state": target.value,
            "allowed_states": allowed,
        },
    )
