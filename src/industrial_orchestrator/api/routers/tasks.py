"""Tasks (user guide §7 "Task Management"): plans, dependency graphs, statuses."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from ...domain.tasks.task import TaskStatus
from ...services.tasks import NewTask
from ..dependencies import Leases, Tasks
from ..paths import API_PREFIX, TaskId
from ..schemas.common import error_responses
from ..schemas.external_agents import ArtifactRead
from ..schemas.tasks import (
    AttemptRead,
    DecomposeRequest,
    DecomposeResult,
    DependencyAdd,
    DependencyGraphRead,
    TaskCreate,
    TaskPage,
    TaskPatch,
    TaskRead,
    TaskTreeRead,
)
from .sessions import Page, PageSize

router = APIRouter(prefix=f"{API_PREFIX}/tasks", tags=["tasks"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    summary="Create a task",
    responses=error_responses(422),
)
async def create_task(body: TaskCreate, tasks: Tasks) -> TaskRead:
    """A PENDING task, optionally in a session, under a parent, after other tasks.
    Dependencies stay within one session (or, outside sessions, one task tree)."""
    created = await tasks.create(
        NewTask(
            title=body.title,
            description=body.description,
            task_type=body.task_type,
            required_capabilities=body.required_capabilities,
            estimated_effort=body.estimated_effort,
            session_id=body.session_id,
            parent_id=body.parent_id,
            depends_on=body.depends_on,
            files=body.files,
        )
    )
    return TaskRead.of(created)


@router.get("", response_model=TaskPage, summary="List tasks", responses=error_responses(422))
async def list_tasks(
    tasks: Tasks,
    session_id: Annotated[UUID | None, Query(description="Only this session's tasks")] = None,
    parent_id: Annotated[UUID | None, Query(description="Only this task's subtasks")] = None,
    status_filter: Annotated[
        list[TaskStatus] | None,
        Query(alias="status", description="Repeat to filter by several statuses"),
    ] = None,
    page: Page = 1,
    page_size: PageSize = 20,
) -> TaskPage:
    """Tasks in creation order (a plan lists in its engineering order)."""
    items, total = await tasks.search(
        session_id=session_id,
        parent_id=parent_id,
        statuses=status_filter or (),
        offset=(page - 1) * page_size,
        limit=page_size,
    )
    return TaskPage(
        items=[TaskRead.of(t) for t in items], total=total, page=page, page_size=page_size
    )


@router.get(
    "/{task_id}", response_model=TaskRead, summary="Get a task", responses=error_responses(404)
)
async def get_task(task_id: TaskId, tasks: Tasks) -> TaskRead:
    return TaskRead.of(await tasks.get(task_id))


@router.patch(
    "/{task_id}",
    response_model=TaskRead,
    summary="Change a task's status",
    responses=error_responses(404, 409, 422),
)
async def patch_task(task_id: TaskId, body: TaskPatch, tasks: Tasks) -> TaskRead:
    """PENDING -> READY | CANCELLED | SKIPPED; READY -> RUNNING | PENDING | CANCELLED |
    SKIPPED; RUNNING -> COMPLETED | FAILED | CANCELLED; FAILED -> READY | CANCELLED.
    READY and RUNNING need every dependency COMPLETED or SKIPPED (409 naming the others)."""
    moved = await tasks.move(
        task_id,
        body.status,
        summary=body.result_summary,
        expected_version=body.expected_version,
    )
    return TaskRead.of(moved)


@router.post(
    "/{task_id}/decompose",
    status_code=status.HTTP_201_CREATED,
    response_model=DecomposeResult,
    summary="Plan a task into subtasks",
    responses=error_responses(404, 409, 422),
)
async def decompose_task(
    task_id: TaskId, tasks: Tasks, body: DecomposeRequest | None = None
) -> DecomposeResult:
    """Split the task with a template (microservice, crud, security, ui or generic),
    chosen from its title and description (the score and matched keywords are in the
    answer) or named. The subtasks are stored with their dependencies; the task then waits
    for its direct subtasks. A subtask can be decomposed again later."""
    request = body or DecomposeRequest()
    result = await tasks.decompose(task_id, template=request.template, max_depth=request.max_depth)
    return DecomposeResult.of(result)


@router.get(
    "/{task_id}/dependencies",
    response_model=DependencyGraphRead,
    summary="The task's dependency graph",
    responses=error_responses(404),
)
async def task_dependencies(task_id: TaskId, tasks: Tasks) -> DependencyGraphRead:
    """For a decomposed task, the graph of its plan (every task below it); otherwise the
    task and what it depends on. With a topological order, the critical path by effort,
    the tasks ready now and the blocked ones with what they wait for."""
    return DependencyGraphRead.of(await tasks.dependencies(task_id))


@router.post(
    "/{task_id}/dependencies",
    response_model=TaskRead,
    summary="Add a dependency",
    responses=error_responses(404, 409, 422),
)
async def add_dependency(task_id: TaskId, body: DependencyAdd, tasks: Tasks) -> TaskRead:
    """The task will wait for `depends_on`. An edge that would close a loop is refused
    (422, `dependency_cycle`, naming the loop). A READY task waiting again goes back to
    PENDING."""
    return TaskRead.of(await tasks.add_dependency(task_id, body.depends_on))


@router.get(
    "/{task_id}/tree",
    response_model=TaskTreeRead,
    summary="The task and its subtasks, nested",
    responses=error_responses(404),
)
async def task_tree(task_id: TaskId, tasks: Tasks) -> TaskTreeRead:
    return TaskTreeRead.of(await tasks.tree(task_id))


@router.get(
    "/{task_id}/attempts",
    response_model=list[AttemptRead],
    summary="The task's attempts (leases) and how each ended",
    responses=error_responses(404),
)
async def task_attempts(task_id: TaskId, leases: Leases) -> list[AttemptRead]:
    return [AttemptRead.of(attempt) for attempt in await leases.attempts(task_id)]


@router.get(
    "/{task_id}/artifacts",
    response_model=list[ArtifactRead],
    summary="What the task's attempts delivered (path, type, size, SHA-256)",
    responses=error_responses(404),
)
async def task_artifacts(task_id: TaskId, leases: Leases) -> list[ArtifactRead]:
    return [ArtifactRead.of(a) for a in await leases.artifacts(task_id)]
