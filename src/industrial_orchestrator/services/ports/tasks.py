"""Tasks, their dependency edges, their attempts and the artifacts those delivered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol
from uuid import UUID

from ...domain.agents.agent import Agent
from ...domain.agents.records import FinishedAttempt
from ...domain.events import NewEvent
from ...domain.sessions.session import Session
from ...domain.tasks.artifacts import Artifact
from ...domain.tasks.attempts import TaskAttempt
from ...domain.tasks.task import Task, TaskStatus, TaskType


class TaskRepository(Protocol):
    async def lock_family(self, key: UUID) -> None:
        """Hold the family's write lock (key: session id, or root task id) until commit."""

    async def root_of(self, task_id: UUID) -> UUID: ...

    async def lock_session_family_for(
        self, task_id: UUID, agent_id: UUID
    ) -> tuple[Agent | None, UUID | None]:
        """A result's first read, in one round trip where the database can: the agent's
        record, and the task's session with its family's lock taken (``lock_family``).
        No session (and no lock) when the task has none or does not exist; (None, None),
        and no lock, when the agent is not registered."""

    async def add(self, task: Task) -> None:
        """Insert the task and its dependency edges."""

    async def add_all(self, tasks: Sequence[Task]) -> None:
        """Insert the tasks in the order given (a parent before its children), then all
        their dependency edges (so a task may depend on one given after it): a plan in
        two statements, not one per row. ``DuplicateKeyError`` as ``add_dependency``."""

    async def add_dependency(self, task_id: UUID, depends_on: UUID) -> None:
        """Raises ``DuplicateKeyError`` when the edge exists."""

    async def add_dependencies(self, task_id: UUID, depends_on: Sequence[UUID]) -> None:
        """``add_dependency`` for each of ``depends_on``, in one go."""

    async def get(self, task_id: UUID) -> Task | None: ...

    async def get_many(self, task_ids: Sequence[UUID]) -> list[Task]:
        """Those of the tasks that exist, in the order of ``task_ids``."""

    async def search(
        self,
        *,
        session_id: UUID | None,
        parent_id: UUID | None,
        statuses: Sequence[TaskStatus],
        offset: int,
        limit: int | None,
    ) -> tuple[list[Task], int]:
        """Oldest first, with the total count (``limit`` None: all)."""

    async def of_session(self, session_id: UUID, statuses: Sequence[TaskStatus] = ()) -> list[Task]:
        """Every task of the session (in ``statuses`` if given), oldest first: ``search``
        without the page and its count."""

    async def with_session(self, session_id: UUID) -> tuple[Session | None, list[Task]]:
        """The session and every task of it, oldest first: in one statement where the
        database can (a result moves its session's plan on, reading both), else the
        tasks first, then the session."""

    async def sessions_with_tasks_in(
        self, statuses: Sequence[TaskStatus], *, among: Sequence[UUID] | None = None
    ) -> list[UUID]:
        """The sessions (of ``among``, if given) that have a task in one of ``statuses``."""

    async def family(self, task: Task) -> list[Task]:
        """The tasks ``task`` may depend on: its session's, or its tree's without one."""

    async def subtree(self, root_id: UUID) -> list[Task]: ...

    async def save(self, before: Task, after: Task, *, skip_locked: bool = False) -> bool:
        """Guarded write: False when the row is no longer ``before``. ``skip_locked``:
        False at once, without waiting, while another transaction holds the row (a claim
        that loses the race looks for another task instead of queueing behind the
        winner; where writers take turns anyway, no different)."""

    async def save_at_commit(self, before: Task, after: Task, *, stale: Exception) -> None:
        """``save``, raising ``stale`` (from the commit, or at once) when the row is no longer
        ``before``. Kept for the commit where that saves a round trip (PostgreSQL: the writes
        join the commit's last statement; elsewhere the write runs at once): the transaction's
        reads do not see it, so it is a row's last write in the transaction."""

    async def claimable(
        self,
        capabilities: Sequence[str],
        *,
        limit: int,
        lock: bool = True,
        agent_name: str | None = None,
    ) -> list[Task]:
        """READY leaf tasks (of RUNNING sessions or of none) whose required capabilities
        are all in ``capabilities``, most urgent first; with ``agent_name``, only of
        sessions that name no agents or name that one; not of a session with files still
        to be written (a pending workspace write: its next tasks would start without
        them); with ``lock``, locked for this transaction where the database can
        (skipping rows other claimers hold)."""

    async def claimable_for(self, agent_id: UUID, *, limit: int) -> tuple[Agent | None, list[Task]]:
        """The agent's record and ``claimable`` for its capabilities and name (unlocked),
        in one round trip where the database can: a claim's look. (None, []) when the
        agent is not registered."""


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    attempt: int
    path: str
    mime_type: str
    size_bytes: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewLease:
    """A lease as ``domain.tasks.lease_rules`` computes it: the task as read and as
    leased, the agent as read and as booked, the attempt it opens and the events that
    say so."""

    task: Task
    running: Task
    agent: Agent
    booked: Agent
    attempt: TaskAttempt
    events: Sequence[NewEvent]


def check_one_try(leases: Sequence[NewLease]) -> None:
    """``ValueError`` unless ``leases`` can be one try of ``open_first``: some, each with
    its events in its task's session, one agent's booked alike, of tasks in one state,
    all of sessions or none."""
    if not leases:
        raise ValueError("a lease of one of no tasks")
    first = leases[0]
    for lease in leases:
        session_id = lease.task.session_id
        if not lease.events or any(e.session_id != session_id for e in lease.events):
            raise ValueError("a lease's events are its task's session's, and there are some")
        if (session_id is None) != (first.task.session_id is None):
            raise ValueError("one try leases tasks of sessions or none")
        if (lease.agent, lease.booked, lease.task.status) != (
            first.agent,
            first.booked,
            first.task.status,
        ):
            raise ValueError("one try is one agent's, booked alike, for tasks in one state")


@dataclass(frozen=True, slots=True)
class OpenedLease:
    finished_dependencies: list[Task]
    """The task's dependencies that are finished (COMPLETED or SKIPPED), read with the
    lease: what its agent is told of the work before it."""


class LeaseRefused(Enum):
    TASK_TAKEN = "task_taken"
    """The task is no longer as read, or another transaction holds it."""
    AGENT_CHANGED = "agent_changed"
    """The agent's record is no longer as read (it claimed in parallel, say)."""


class AttemptRepository(Protocol):
    async def add(self, attempt: TaskAttempt) -> None: ...

    async def open(self, lease: NewLease) -> OpenedLease | LeaseRefused:
        """Write ``lease``: the task saved if it is still as read and no other transaction
        holds its row, the agent saved if it is still as read, the attempt added, the
        events appended to the transaction's; and read the task's finished dependencies.
        In one statement where the database can (a claim's whole write: it then needs
        no transaction around it), else in steps. Refused: the caller must not commit
        (in steps the task's row may be written already); after TASK_TAKEN it may try
        another task in the same transaction."""

    async def open_first(
        self, leases: Sequence[NewLease]
    ) -> tuple[NewLease, OpenedLease] | LeaseRefused:
        """``open`` the first of ``leases`` (one agent's, booked alike, of different
        tasks in one state, all of sessions or none) whose task is still as read and
        free, in their order; which one, and what ``open`` gives. In one statement where
        the database can: a task taken meanwhile costs no round trip of its own.
        TASK_TAKEN when every one was; refused as ``open`` is."""

    async def get(self, task_id: UUID, attempt: int) -> TaskAttempt | None: ...

    async def with_task(self, task_id: UUID) -> tuple[Task | None, TaskAttempt | None]:
        """The task and its current attempt (None before its first lease), read together:
        in one statement where the database can (every result and log line of an agent
        reads both)."""

    async def in_session(
        self, session_id: UUID, task_id: UUID
    ) -> tuple[Session | None, list[Task], TaskAttempt | None]:
        """The session, every task of it (oldest first) and the current attempt of one
        of them (``task_id``'s; None when it has none, or is not the session's): in one
        statement where the database can (a result reads them all)."""

    async def of_task(self, task_id: UUID) -> list[TaskAttempt]: ...

    async def open_of_agent(self, agent_id: UUID) -> list[TaskAttempt]: ...

    async def open_of_tasks(self, task_ids: Sequence[UUID]) -> list[TaskAttempt]:
        """The open attempts of the tasks, by task then attempt: one read for many."""

    async def expired(self, before: datetime, *, limit: int) -> list[TaskAttempt]:
        """Open attempts whose lease ran out before ``before``, oldest expiry first."""

    async def renew(
        self, agent_id: UUID, expires_at: datetime, *, only: Sequence[UUID] | None = None
    ) -> list[TaskAttempt]:
        """Extend the agent's open attempts (of the tasks ``only``, when given); returns
        the renewed ones."""

    async def close(self, closed: TaskAttempt) -> bool:
        """Record the outcome; False when the attempt was closed already."""

    async def close_at_commit(self, closed: TaskAttempt, *, stale: Exception) -> None:
        """``close``, raising ``stale`` (from the commit, or at once) when the attempt was closed
        already. Kept for the commit where that saves a round trip (PostgreSQL: the writes join
        the commit's last statement; elsewhere the write runs at once): the transaction's reads
        do not see it, so it is a row's last write in the transaction."""

    async def set_trouble(self, task_id: UUID, attempt: int, trouble: str | None) -> bool:
        """Note (or clear) what holds the open attempt up; False when it is not open."""

    async def add_artifacts(
        self, attempt: TaskAttempt, artifacts: Sequence[Artifact], at: datetime
    ) -> None: ...

    async def artifacts(self, task_id: UUID) -> list[StoredArtifact]: ...

    async def delivered(self, task_id: UUID, attempt: int) -> list[Artifact]:
        """One attempt's artifacts with their content, by path."""

    async def touched(self, task_ids: Sequence[UUID]) -> dict[UUID, set[str]]:
        """The paths of the artifacts each task's attempts delivered, by task."""

    async def stopped_by_guard(self, task_ids: Sequence[UUID]) -> dict[UUID, set[UUID]]:
        """The agents whose attempts at each task the loop guard stopped, by task."""

    async def recent_results(
        self,
        *,
        agent_ids: Sequence[UUID] | None,
        task_types: Sequence[TaskType] | None,
        since: datetime,
        per_pair: int,
    ) -> list[FinishedAttempt]:
        """The latest ``per_pair`` attempts finished since ``since`` (completed, failed
        or expired) per (agent, task type), of ``agent_ids`` and ``task_types`` (None:
        all); the raw material of ``domain.agents.records``."""
