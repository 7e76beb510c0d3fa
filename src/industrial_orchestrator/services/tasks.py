"""Task use cases: create, decompose into a plan, wire dependencies, move through statuses.

Each use case is one transaction. Dependencies may only join tasks of one *family* (the
tasks of one session, or the tree of a task outside any session), so a plan's graph is
always loaded whole and checked whole: a new edge that would close a loop is refused with
the loop named, and a task cannot become READY or RUNNING while a dependency is
unfinished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import structlog

from ..domain.errors import Conflict, InvalidInput, NotFound, VersionConflict
from ..domain.planning.decomposition import decompose_task
from ..domain.planning.plans import Decomposition, TemplateChoice
from ..domain.tasks import events as task_events
from ..domain.tasks.graph import (
    CriticalPath,
    CycleDetected,
    TaskNode,
    blocked,
    critical_path,
    graph_of,
    ready,
    topological_order,
    would_create_cycle,
)
from ..domain.tasks.task import (
    FINISHED_STATUSES,
    Task,
    TaskStatus,
    TaskType,
    new_task,
    task_transition,
)
from .lease_endings import release_attempt
from .ports import Clock, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.tasks")

# Statuses a task may only enter once every dependency is finished.
_NEEDS_DEPENDENCIES = frozenset({TaskStatus.READY, TaskStatus.RUNNING})


@dataclass(frozen=True, slots=True)
class NewTask:
    title: str
    task_type: TaskType
    required_capabilities: Sequence[str]
    estimated_effort: float
    description: str = ""
    session_id: UUID | None = None
    parent_id: UUID | None = None
    depends_on: Sequence[UUID] = ()
    files: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Decomposed:
    task: Task
    choice: TemplateChoice
    subtasks: list[Task]


@dataclass(frozen=True, slots=True)
class DependencyGraph:
    """The graph around one task: its plan (descendants) if it was decomposed, else the
    task and what it depends on."""

    tasks: list[Task]
    order: list[UUID]
    critical: CriticalPath[UUID]
    ready: list[UUID]
    blocked: dict[UUID, tuple[UUID, ...]]


@dataclass(slots=True)
class TaskTree:
    task: Task
    children: list[TaskTree] = field(default_factory=list)


class TaskService:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def create(self, draft: NewTask) -> Task:
        now = self._clock()
        async with self._uow() as uow:
            session_id = draft.session_id
            await _lock_new(uow, draft)
            if draft.parent_id is not None:
                parent = await _found(uow, draft.parent_id, "parent_id")
                if session_id is None:
                    session_id = parent.session_id
                elif parent.session_id != session_id:
                    raise InvalidInput(
                        f"Task {parent.id} belongs to another session than {session_id}",
                        {"field": "parent_id", "parent_session_id": str(parent.session_id)},
                    )
            if session_id is not None and await uow.sessions.get(session_id) is None:
                raise InvalidInput(f"Session {session_id} does not exist", {"field": "session_id"})
            task = new_task(
                id=uuid4(),
                title=draft.title,
                description=draft.description,
                task_type=draft.task_type,
                required_capabilities=draft.required_capabilities,
                estimated_effort=draft.estimated_effort,
                now=now,
                session_id=session_id,
                parent_id=draft.parent_id,
                depends_on=draft.depends_on,
                files=draft.files,
            )
            for dependency_id in task.depends_on:
                dependency = await _found(uow, dependency_id, "depends_on")
                await _check_family(uow, task, dependency, anchor=task.parent_id)
            await uow.tasks.add(task)
            await uow.events.append([task_events.task_created(task)])
            await uow.commit()
        log.info("task_created", task_id=str(task.id), session_id=_str(task.session_id))
        return task

    async def get(self, task_id: UUID) -> Task:
        async with self._uow.reader() as uow:
            return await _found(uow, task_id)

    async def search(
        self,
        *,
        session_id: UUID | None = None,
        parent_id: UUID | None = None,
        statuses: Sequence[TaskStatus] = (),
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Task], int]:
        async with self._uow.reader() as uow:
            return await uow.tasks.search(
                session_id=session_id,
                parent_id=parent_id,
                statuses=statuses,
                offset=offset,
                limit=limit,
            )

    async def move(
        self,
        task_id: UUID,
        target: TaskStatus,
        *,
        summary: str | None = None,
        expected_version: int | None = None,
    ) -> Task:
        """Change the task's status along the task transition table."""
        async with self._uow() as uow:
            task = await _locked(uow, task_id)
            if expected_version is not None and task.version != expected_version:
                raise _stale(task, expected_version)
            if target in _NEEDS_DEPENDENCIES:
                waiting = [
                    dep
                    for dep in await _dependencies(uow, task)
                    if dep.status not in FINISHED_STATUSES
                ]
                if waiting:
                    raise Conflict(
                        f"Task {task.id} cannot become {target.value}: it waits for "
                        + ", ".join(f"{d.id} ({d.status.value})" for d in waiting),
                        {
                            "current_state": task.status.value,
                            "requested_state": target.value,
                            "blocked_by": [str(d.id) for d in waiting],
                        },
                    )
            now = self._clock()
            moved = task_transition(task, target, now=now, summary=summary)
            if not await uow.tasks.save(task, moved):
                raise _stale(task, task.version, concurrent=True)
            if task.status == TaskStatus.RUNNING:
                # Taken out of its agent's hands: the lease ends now, so the agent's
                # heartbeat tells it to stop and its slot is free again.
                await release_attempt(uow, task, f"moved to {target.value} by an operator", now)
            await uow.events.append([task_events.task_transition(task, moved)])
            if moved.is_terminal:
                # A task's scratch memory ends with it.
                await uow.contexts.delete_temporary_of(task.id)
            await uow.commit()
        log.info(
            "task_moved", task_id=str(task_id), from_state=task.status.value, to_state=target.value
        )
        return moved

    async def add_dependency(self, task_id: UUID, depends_on: UUID) -> Task:
        """Make ``task_id`` wait for ``depends_on``; refused if it would close a loop."""
        now = self._clock()
        async with self._uow() as uow:
            task = await _locked(uow, task_id)
            dependency = await _found(uow, depends_on, "depends_on")
            await _check_family(uow, task, dependency, anchor=task.id)
            if depends_on in task.depends_on:
                return task
            if task.status not in (TaskStatus.PENDING, TaskStatus.READY):
                raise Conflict(
                    f"Task {task.id} is {task.status.value}: dependencies can only be added "
                    "before a task starts",
                    {"current_state": task.status.value},
                )
            _nodes, edges = graph_of(await uow.tasks.family(task))
            cycle = would_create_cycle(edges, (task.id, depends_on))
            if cycle is not None:
                raise CycleDetected(cycle)
            await uow.tasks.add_dependency(task.id, depends_on)
            # A new edge is a change of the task: its version moves, so a client holding
            # the old version cannot act on what it no longer is.
            updated = task.evolve(
                depends_on=tuple(sorted({*task.depends_on, depends_on})),
                version=task.version + 1,
                updated_at=now,
            )
            if task.status == TaskStatus.READY and dependency.status not in FINISHED_STATUSES:
                # It was ready; now it waits again.
                updated = task_transition(updated, TaskStatus.PENDING, now=now).evolve(
                    version=task.version + 1
                )
                await uow.events.append([task_events.task_transition(task, updated)])
            if not await uow.tasks.save(task, updated):
                raise _stale(task, task.version, concurrent=True)
            await uow.events.append([task_events.task_dependency_added(task, dependency, now)])
            await uow.commit()
        return updated

    async def decompose(
        self, task_id: UUID, *, template: str | None = None, max_depth: int = 1
    ) -> Decomposed:
        """Plan ``task_id`` into subtasks (stored, with their dependencies) from a template
        chosen by the task's text or named."""
        now = self._clock()
        async with self._uow() as uow:
            task = await _locked(uow, task_id)
            if task.status in (TaskStatus.RUNNING, *FINISHED_STATUSES, TaskStatus.CANCELLED):
                raise Conflict(
                    f"Task {task.id} is {task.status.value}: only a task that has not started "
                    "can be decomposed",
                    {"current_state": task.status.value},
                )
            existing, _ = await uow.tasks.search(
                session_id=None, parent_id=task.id, statuses=(), offset=0, limit=1
            )
            if existing:
                raise Conflict(
                    f"Task {task.id} was already decomposed; decompose one of its subtasks",
                    {"task_id": str(task.id)},
                )
            plan = decompose_task(
                task.title,
                task.description,
                task.task_type,
                required_capabilities=task.required_capabilities,
                estimated_effort=task.estimated_effort,
                template=template,
                max_depth=max_depth,
            )
            grouped, subtasks = await store_plan(uow, task, plan, now)
            await uow.commit()
        log.info(
            "task_decomposed",
            task_id=str(task.id),
            template=plan.choice.template,
            subtasks=len(subtasks),
        )
        return Decomposed(grouped, plan.choice, subtasks)

    async def dependencies(self, task_id: UUID) -> DependencyGraph:
        async with self._uow.reader() as uow:
            task = await _found(uow, task_id)
            below = [t for t in await uow.tasks.subtree(task.id) if t.id != task.id]
            members = below or [task, *await _dependencies(uow, task)]
        inside = {t.id for t in members}
        # A task split into subtasks is done when they are: its effort is theirs, counted once.
        parents = {t.parent_id for t in members}
        nodes: dict[UUID, TaskNode] = {}
        edges: dict[UUID, tuple[UUID, ...]] = {}
        for member in members:
            effort = 0.0 if member.id in parents else member.estimated_effort
            nodes[member.id] = TaskNode(effort, member.status)
            edges[member.id] = tuple(d for d in member.depends_on if d in inside)
        return DependencyGraph(
            tasks=members,
            order=topological_order(list(nodes), edges),
            critical=critical_path(nodes, edges),
            ready=ready(nodes, edges),
            blocked=blocked(nodes, edges),
        )

    async def tree(self, task_id: UUID) -> TaskTree:
        async with self._uow.reader() as uow:
            await _found(uow, task_id)
            members = await uow.tasks.subtree(task_id)
        nodes = {member.id: TaskTree(member) for member in members}
        for member in members:
            if member.id != task_id and member.parent_id in nodes:
                nodes[member.parent_id].children.append(nodes[member.id])
        return nodes[task_id]


async def store_plan(
    uow: UnitOfWork, task: Task, plan: Decomposition, now: datetime, *, new: bool = False
) -> tuple[Task, list[Task]]:
    """Store ``plan`` under ``task`` within the caller's transaction (which holds the
    family lock): the subtasks, their edges, and ``task`` waiting for its direct
    subtasks, with the events. Returns the task as it now is and the subtasks.
    ``new``: ``task`` is not stored yet (a session's first task): it is stored with its
    plan, in the same statements, and its creation is an event too."""
    ids = {planned.key: uuid4() for planned in plan.tasks}
    subtasks: list[Task] = []
    for position, planned in enumerate(plan.tasks):
        subtask = new_task(
            id=ids[planned.key],
            title=planned.title,
            description=planned.description,
            task_type=planned.task_type,
            required_capabilities=planned.required_capabilities,
            estimated_effort=planned.estimated_effort,
            # Microseconds apart, so that listing by creation keeps the plan's order.
            now=now + timedelta(microseconds=position),
            session_id=task.session_id,
            parent_id=ids[planned.parent_key] if planned.parent_key else task.id,
            # A subtask that waits for nothing in the plan waits for what the
            # task waited for.
            depends_on=[ids[key] for key in planned.depends_on] or task.depends_on,
            template=plan.choice.template,
            files=planned.files,
        )
        subtasks.append(subtask)
    # Rows first, parents before children (foreign key), then the edges: a summary
    # subtask depends on its own children, so no order of whole tasks would do.
    by_id = {subtask.id: subtask for subtask in subtasks}
    in_order = sorted(subtasks, key=lambda t: depth_in(t, by_id))
    # The task is done when its plan is: it now waits for its direct subtasks.
    direct = [sub.id for sub in subtasks if sub.parent_id == task.id]
    grouped = task.evolve(
        depends_on=tuple(sorted({*task.depends_on, *direct})),
        version=task.version + 1,
        updated_at=now,
    )
    if new:
        # Rows before edges (``add_all``), so the task may point at its subtasks.
        await uow.tasks.add_all([grouped, *in_order])
        await uow.events.append([task_events.task_created(task)])
    else:
        await uow.tasks.add_all(in_order)
        await uow.tasks.add_dependencies(task.id, direct)
        if task.status == TaskStatus.READY:
            grouped = task_transition(grouped, TaskStatus.PENDING, now=now).evolve(
                version=task.version + 1
            )
            await uow.events.append([task_events.task_transition(task, grouped)])
        if not await uow.tasks.save(task, grouped):
            raise _stale(task, task.version, concurrent=True)
    await uow.events.append(
        [
            *(task_events.task_created(subtask) for subtask in subtasks),
            task_events.task_decomposed(
                task, plan.choice.template, plan.choice.score, subtasks, now
            ),
        ]
    )
    return grouped, subtasks


async def _found(uow: UnitOfWork, task_id: UUID, field_name: str | None = None) -> Task:
    task = await uow.tasks.get(task_id)
    if task is not None:
        return task
    if field_name is not None:  # a reference in the request body, not the URL
        raise InvalidInput(f"Task {task_id} does not exist", {"field": field_name})
    raise NotFound(f"Task {task_id} does not exist", {"task_id": str(task_id)})


async def _locked(uow: UnitOfWork, task_id: UUID) -> Task:
    """The task, read after taking its family's write lock."""
    task = await _found(uow, task_id)
    await uow.tasks.lock_family(task.session_id or await uow.tasks.root_of(task.id))
    return await _found(uow, task_id)


async def _lock_new(uow: UnitOfWork, draft: NewTask) -> None:
    """Lock the family a new task joins (its dependencies are checked within it)."""
    if draft.session_id is not None:
        await uow.tasks.lock_family(draft.session_id)
    elif draft.parent_id is not None:
        parent = await _found(uow, draft.parent_id, "parent_id")
        await uow.tasks.lock_family(parent.session_id or await uow.tasks.root_of(parent.id))


async def _dependencies(uow: UnitOfWork, task: Task) -> list[Task]:
    found = [await uow.tasks.get(dep) for dep in task.depends_on]
    return [dep for dep in found if dep is not None]


async def _check_family(
    uow: UnitOfWork, task: Task, dependency: Task, *, anchor: UUID | None
) -> None:
    """Dependencies stay within one session, or, outside sessions, within one tree
    (``anchor`` is a stored task of the new task's tree: itself, or its parent)."""
    if task.session_id is not None or dependency.session_id is not None:
        same = task.session_id == dependency.session_id
        where = "session"
    else:
        tree = {member.id for member in await uow.tasks.family(dependency)}
        same = anchor is not None and anchor in tree
        where = "task tree"
    if not same:
        raise InvalidInput(
            f"Task {dependency.id} is not in the same {where} as this task; "
            f"dependencies stay within one {where}",
            {"field": "depends_on", "depends_on": str(dependency.id)},
        )


def _stale(task: Task, expected: int, *, concurrent: bool = False) -> VersionConflict:
    why = "was changed by a concurrent request" if concurrent else f"is at version {task.version}"
    return VersionConflict(
        f"Task {task.id} {why}, not {expected}; reload it and try again",
        {"task_id": str(task.id), "current_version": task.version, "expected_version": expected},
    )


def depth_in(task: Task, by_id: dict[UUID, Task]) -> int:
    """How many of ``by_id`` are above ``task`` (parents are stored before children)."""
    depth = 0
    while task.parent_id in by_id:
        task = by_id[task.parent_id]
        depth += 1
    return depth


def _str(value: UUID | None) -> str | None:
    return str(value) if value is not None else None
