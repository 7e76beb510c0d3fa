"""Moving a session's plan on: the tasks whose dependencies are done made READY (up to
the session's parallel limit), the summary tasks whose subtasks are done closed, layer
after layer, in the caller's transaction.

A result calls it in its own transaction (the tasks that waited for it are READY when the
result is acknowledged), on the session and tasks it has read already, with its writes
kept for the commit (``advance_read_plan``); the engine's step calls it after every
change to the session's tasks.

The caller holds the session's family lock (``TaskRepository.lock_family``), taken before
any of the session's task rows, as every writer of a family does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from ..domain.errors import Conflict
from ..domain.sessions.options import budget_exceeded
from ..domain.sessions.progress import Progress, progress_of
from ..domain.sessions.session import Session, SessionPhase
from ..domain.sessions.states import SessionState
from ..domain.tasks import events as task_events
from ..domain.tasks.task import Task, TaskStatus, task_transition
from .ports import UnitOfWork

_MOVING = (SessionState.RUNNING, SessionState.DEGRADED)
# Summary tasks closed open what waited for them, which may close further summaries: a
# plan is never deeper than this many layers of summaries.
_LAYERS = 16


@dataclass(frozen=True, slots=True)
class Advanced:
    session: Session
    """The session as the moves read it."""
    progress: Progress
    """Where the plan stands after the moves."""
    tasks: list[Task]
    """The session's tasks after the moves."""
    opened: int
    closed: int

    @property
    def moved(self) -> bool:
        return bool(self.opened or self.closed)


async def plan_now(
    uow: UnitOfWork,
    session_id: UUID,
    *,
    default_parallel: int,
    session: Session | None = None,
    tasks: list[Task] | None = None,
) -> tuple[Advanced, bool] | None:
    """Where the session's plan stands, read without moving it, and whether
    ``advance_plan`` would move it now; None when it would not look at it (see there).
    A step that finds nothing to move needs no write, nor the family's lock. ``session``
    and ``tasks``: as the caller has just read them, together (else the tasks are read,
    then the session)."""
    if tasks is None:
        tasks = await tasks_of(uow, session_id)
    if session is None:
        session = await uow.sessions.get(session_id)
    if session is None or not _movable(session):
        return None
    progress = progress_of(tasks)
    limit = session.options.max_parallel_tasks or default_parallel
    movable = bool(_starting(progress, tasks, limit) or progress.closable)
    return Advanced(session, progress, tasks, 0, 0), movable


async def advance_plan(
    uow: UnitOfWork, session_id: UUID, now: datetime, *, default_parallel: int
) -> Advanced | None:
    """Open what can start, up to the session's limit of parallel tasks, and close the
    summary tasks whose subtasks are done; None when the session is not executing a plan
    (not RUNNING or DEGRADED, not past planning, or its budget spent: the engine's next
    step ends it)."""
    # The session read with the tasks, or after them: a result that finished one of them
    # has added its usage by then, so no new task is opened on a budget already spent.
    session, tasks = await uow.tasks.with_session(session_id)
    if session is None:
        return None
    return await _advance(uow, session, tasks, now, default_parallel, at_commit=False)


async def advance_read_plan(
    uow: UnitOfWork, session: Session, tasks: list[Task], now: datetime, *, default_parallel: int
) -> Advanced | None:
    """``advance_plan`` of ``session`` and its ``tasks`` as the caller has read them
    under the family's lock, with its own changes (and the session's usage) applied, its
    writes kept for the commit (``TaskRepository.save_at_commit``): the caller reads
    none of the tasks again."""
    return await _advance(uow, session, tasks, now, default_parallel, at_commit=True)


async def _advance(
    uow: UnitOfWork,
    session: Session,
    tasks: list[Task],
    now: datetime,
    default_parallel: int,
    *,
    at_commit: bool,
) -> Advanced | None:
    if not _movable(session):
        return None
    limit = session.options.max_parallel_tasks or default_parallel
    opened = closed = 0
    progress = progress_of(tasks)
    for _ in range(_LAYERS):
        starting = _starting(progress, tasks, limit)
        moved: dict[UUID, Task] = {}
        for task in starting:
            ready = task_transition(task, TaskStatus.READY, now=now)
            if await _move(uow, task, [ready], at_commit):
                moved[task.id] = ready
                opened += 1
        summaries = 0
        for task in progress.closable:
            done = await _close_summary(uow, task, now, at_commit)
            if done is not None:
                moved[task.id] = done
                summaries += 1
        closed += summaries
        tasks = [moved.get(task.id, task) for task in tasks]
        progress = progress_of(tasks)
        if not summaries:
            break  # only a closed summary can make more startable
    return Advanced(session, progress, tasks, opened, closed)


def _movable(session: Session) -> bool:
    """Executing its plan, with budget left."""
    if session.status not in _MOVING or session.phase != SessionPhase.EXECUTING:
        return False
    return not budget_exceeded(session.options, session.tokens_used, session.cost_usd)


def _starting(progress: Progress, tasks: list[Task], limit: int) -> list[Task]:
    """What opens now: independent tasks run side by side, up to the session's limit."""
    active = sum(t.status in (TaskStatus.READY, TaskStatus.RUNNING) for t in tasks)
    return progress.startable[: max(0, limit - active)]


async def tasks_of(uow: UnitOfWork, session_id: UUID) -> list[Task]:
    return await uow.tasks.of_session(session_id)


async def _close_summary(
    uow: UnitOfWork, task: Task, now: datetime, at_commit: bool
) -> Task | None:
    """A summary task is done when its subtasks are: through READY and RUNNING to
    COMPLETED, each step in the history. Its last state, or None when it moved meanwhile."""
    steps = [task_transition(task, TaskStatus.READY, now=now)]
    steps.append(task_transition(steps[-1], TaskStatus.RUNNING, now=now))
    steps.append(
        task_transition(
            steps[-1], TaskStatus.COMPLETED, now=now, summary="all its subtasks are finished"
        )
    )
    return steps[-1] if await _move(uow, task, steps, at_commit) else None


async def _move(uow: UnitOfWork, task: Task, steps: list[Task], at_commit: bool) -> bool:
    """Save the task's successive ``steps``, each with its event; False when it moved
    meanwhile. ``at_commit``: the last step written at the commit, which fails if the task
    moved (it cannot under the family's lock)."""
    if at_commit:
        stale = Conflict(
            f"Task {task.id} changed while its session's plan moved on; retry",
            {"task_id": str(task.id)},
        )
        await uow.tasks.save_at_commit(task, steps[-1], stale=stale)
        befores = [task, *steps[:-1]]
        await uow.events.append(
            [task_events.task_transition(b, a) for b, a in zip(befores, steps, strict=True)]
        )
        return True
    before = task
    for after in steps:
        if not await uow.tasks.save(before, after):
            return False
        await uow.events.append([task_events.task_transition(before, after)])
        before = after
    return True
