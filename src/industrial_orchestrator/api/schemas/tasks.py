"""Task resource: create, read, page, status changes, decomposition, dependency graph."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StrictInt

from ...domain.planning.templates import TEMPLATES
from ...domain.tasks.attempts import AttemptOutcome, TaskAttempt
from ...domain.tasks.file_conflicts import MAX_FILES
from ...domain.tasks.task import Task, TaskStatus, TaskType, task_fields
from ...services.tasks import Decomposed, DependencyGraph, TaskTree
from .common import StrictModel
from .sessions import Title

MAX_DESCRIPTION_CHARS = 20_000
MAX_CAPABILITIES = 32
MAX_DEPENDENCIES = 100


def _capability(value: str) -> str:
    if not value.strip():
        raise ValueError("capability names must not be blank")
    return value


Capability = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_capability)]


class TaskCreate(StrictModel):
    title: Title
    description: str = Field("", max_length=MAX_DESCRIPTION_CHARS)
    task_type: TaskType = Field(TaskType.CODE_GENERATION, description="The kind of work")
    required_capabilities: list[Capability] = Field(
        default_factory=list,
        max_length=MAX_CAPABILITIES,
        description="Capabilities an agent needs for it (case-insensitive)",
    )
    estimated_effort: float = Field(1.0, gt=0, le=10_000, description="Hours")
    session_id: UUID | None = Field(None, description="The session it belongs to")
    parent_id: UUID | None = Field(None, description="The task it is a part of")
    depends_on: list[UUID] = Field(
        default_factory=list,
        max_length=MAX_DEPENDENCIES,
        description="Tasks that must be COMPLETED or SKIPPED before this one starts",
    )
    files: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list,
        max_length=MAX_FILES,
        description="Workspace paths the task is expected to edit (a directory ends with "
        "'/'); tasks of one session that share one are run one after another",
    )


class TaskRead(BaseModel):
    id: UUID
    session_id: UUID | None
    parent_id: UUID | None
    title: str
    description: str
    task_type: TaskType
    required_capabilities: list[str]
    files: list[str] = Field(description="Paths the plan expects it to edit")
    estimated_effort: float
    status: TaskStatus
    depends_on: list[UUID]
    template: str | None = Field(description="The template that planned it, if any")
    result_summary: str | None
    attempt: int = Field(description="Leases taken so far (the current attempt's number)")
    version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, task: Task) -> TaskRead:
        return cls(**task_fields(task))


class TaskPage(BaseModel):
    items: list[TaskRead]
    total: int
    page: int
    page_size: int


class TaskPatch(StrictModel):
    status: TaskStatus = Field(description="The status to move to (validated transitions)")
    result_summary: str | None = Field(None, max_length=MAX_DESCRIPTION_CHARS)
    expected_version: StrictInt | None = Field(
        None, ge=1, description="Refuse (409) unless the task is still at this version"
    )


class DecomposeRequest(StrictModel):
    template: str | None = Field(
        None,
        description="One of " + ", ".join(sorted(TEMPLATES)) + "; chosen from the text if absent",
    )
    max_depth: int = Field(1, ge=1, le=3, description="How many levels to split heavy steps")


class TemplateChoiceRead(BaseModel):
    template: str
    score: float = Field(description="0-1: how well the task's text matched the template")
    matched: list[str] = Field(description="The keywords that matched")
    explicit: bool = Field(description="Whether the template was named in the request")


class DecomposeResult(BaseModel):
    task: TaskRead
    choice: TemplateChoiceRead
    subtasks: list[TaskRead]

    @classmethod
    def of(cls, result: Decomposed) -> DecomposeResult:
        choice = result.choice
        return cls(
            task=TaskRead.of(result.task),
            choice=TemplateChoiceRead(
                template=choice.template,
                score=choice.score,
                matched=list(choice.matched),
                explicit=choice.explicit,
            ),
            subtasks=[TaskRead.of(t) for t in result.subtasks],
        )


class DependencyAdd(StrictModel):
    depends_on: UUID = Field(description="The task that must finish first")


class GraphNode(BaseModel):
    id: UUID
    title: str
    status: TaskStatus
    estimated_effort: float


class GraphEdge(BaseModel):
    task_id: UUID
    depends_on: UUID


class CriticalPathRead(BaseModel):
    tasks: list[UUID] = Field(description="First to start first")
    total_effort: float


class BlockedRead(BaseModel):
    task_id: UUID
    waiting_for: list[UUID] = Field(description="Unfinished dependencies")


class DependencyGraphRead(BaseModel):
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    order: list[UUID] = Field(description="A topological order: dependencies first")
    critical_path: CriticalPathRead
    ready: list[UUID] = Field(description="Waiting tasks whose dependencies are all finished")
    blocked: list[BlockedRead]

    @classmethod
    def of(cls, graph: DependencyGraph) -> DependencyGraphRead:
        inside = {task.id for task in graph.tasks}
        return cls(
            nodes=[
                GraphNode(
                    id=t.id, title=t.title, status=t.status, estimated_effort=t.estimated_effort
                )
                for t in graph.tasks
            ],
            edges=[
                GraphEdge(task_id=t.id, depends_on=d)
                for t in graph.tasks
                for d in t.depends_on
                if d in inside
            ],
            order=graph.order,
            critical_path=CriticalPathRead(
                tasks=list(graph.critical.path), total_effort=graph.critical.total_effort
            ),
            ready=graph.ready,
            blocked=[
                BlockedRead(task_id=task_id, waiting_for=list(waiting))
                for task_id, waiting in graph.blocked.items()
            ],
        )


class TaskTreeRead(BaseModel):
    task: TaskRead
    children: list[TaskTreeRead]

    @classmethod
    def of(cls, tree: TaskTree) -> TaskTreeRead:
        return cls(task=TaskRead.of(tree.task), children=[cls.of(c) for c in tree.children])


class AttemptRead(BaseModel):
    attempt: int
    agent_id: UUID
    leased_at: datetime
    lease_expires_at: datetime
    outcome: AttemptOutcome | None = Field(description="None while the lease is open")
    finished_at: datetime | None
    error: str | None
    output: dict[str, Any]
    execution_time_ms: int | None
    tokens_used: int
    cost_usd: float

    @classmethod
    def of(cls, attempt: TaskAttempt) -> AttemptRead:
        return cls(
            attempt=attempt.attempt,
            agent_id=attempt.agent_id,
            leased_at=attempt.leased_at,
            lease_expires_at=attempt.expires_at,
            outcome=attempt.outcome,
            finished_at=attempt.finished_at,
            error=attempt.error,
            output=attempt.output,
            execution_time_ms=attempt.execution_time_ms,
            tokens_used=attempt.tokens_used,
            cost_usd=attempt.cost_usd,
        )
