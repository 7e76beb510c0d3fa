"""What the services need from storage, named here and implemented in ``storage/``.

Repositories speak in domain objects; nothing above ``storage/`` sees SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from ..domain.agent_records import FinishedAttempt
from ..domain.agents import Agent
from ..domain.artifacts import Artifact
from ..domain.checkpoint import Checkpoint
from ..domain.context_conflicts import ConflictRecord, ConflictStatus
from ..domain.contexts import Context, ContextScope
from ..domain.effects import Effect
from ..domain.events import Event, EventType, NewEvent
from ..domain.operator_tokens import OperatorToken
from ..domain.priorities import Priority
from ..domain.session import Session, Transition, WorktreeBinding
from ..domain.session_states import SessionState
from ..domain.task_attempts import TaskAttempt
from ..domain.tasks import Task, TaskStatus, TaskType
from ..domain.webhooks import Delivery, Webhook


@dataclass(frozen=True, slots=True)
class SessionQuery:
    statuses: Sequence[SessionState] = ()
    priorities: Sequence[Priority] = ()
    text: str | None = None
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True, slots=True)
class SessionTotals:
    """Aggregates computed by the database over every session."""

    by_state: dict[SessionState, int]
    average_duration_seconds: float | None
    tokens_used: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class IdempotentCreation:
    session: Session
    request_hash: str


class SessionRepository(Protocol):
    async def add(
        self, session: Session, idempotency_key: str | None, request_hash: str | None
    ) -> None:
        """Insert a new session; raises ``DuplicateKeyError`` if the idempotency key is taken."""

    async def get(self, session_id: UUID) -> Session | None: ...

    async def forks_of(self, session_id: UUID) -> list[UUID]:
        """The sessions forked from this one's checkpoints, oldest first."""

    async def on_workspace(self, workspace: str, *, limit: int) -> list[Session]:
        """Sessions with a working tree made from ``workspace``, newest first."""

    async def find_retry(self, session_id: UUID) -> Session | None:
        """The session created by retrying ``session_id``, if any."""

    async def get_by_idempotency_key(self, key: str) -> IdempotentCreation | None: ...

    async def save(self, before: Session, after: Session, *, reserve_events: int = 0) -> int | None:
        """Write the fields that differ from ``before`` if the row is still at
        ``before``'s version and state, reserving ``reserve_events`` event sequence numbers
        in the same statement. Returns the last reserved number (the counter's value when
        none are reserved), or None when the guard failed and nothing was written."""

    async def add_transition(self, record: Transition) -> None: ...

    async def transitions(self, session_id: UUID) -> list[Transition]: ...

    async def search(self, query: SessionQuery) -> tuple[list[Session], int]: ...

    async def count_running(self) -> int: ...

    async def ids_in(self, states: Sequence[SessionState]) -> list[UUID]:
        """Sessions in ``states``, oldest first."""

    async def own(self, session_id: UUID, owner: str, now: datetime, until: datetime) -> str | None:
        """Take or renew the engine's ownership lease; the previous owner when taken over
        from another, ``owner`` when held, None when another holds it."""

    async def disown(self, owner: str, session_id: UUID | None = None) -> int: ...

    async def renew_owned(
        self, owner: str, states: Sequence[SessionState], until: datetime
    ) -> list[UUID]:
        """Extend to ``until`` every lease ``owner`` holds on a session in ``states``, in
        one statement; the sessions it holds."""

    async def unowned_in(self, states: Sequence[SessionState], now: datetime) -> list[UUID]:
        """Sessions in ``states`` that no live process owns (no owner, or its lease ran
        out before ``now``)."""

    async def forget_owners(self) -> int: ...

    async def set_next_due(self, session_id: UUID, at: datetime | None) -> None:
        """When the session's owner is to step it next though nothing happens to it
        (None: no timer)."""

    async def checkpoint_checked(self, session_id: UUID, at: datetime) -> None:
        """Its periodic checkpoint was due at ``at`` and had nothing new to record
        (``Session.checkpoint_checked_at``)."""

    async def take_due(
        self, owner: str, states: Sequence[SessionState], now: datetime
    ) -> list[UUID]:
        """The sessions in ``states`` that ``owner`` holds whose timer is due by ``now``,
        their timers cleared in the same statement: each due timer is taken once."""

    async def bind_worktree(self, session_id: UUID, binding: WorktreeBinding) -> bool:
        """Record the session's working tree, unless it has one already."""

    async def lock_running_slots(self) -> None:
        """Serialise slot accounting between transactions until this one ends."""

    async def next_queued(self) -> Session | None:
        """The QUEUED session to promote first: highest priority, then oldest."""

    async def totals(self) -> SessionTotals: ...

    async def next_checkpoint_seq(self, session_id: UUID) -> int: ...

    async def add_usage(self, session_id: UUID, tokens: int, cost_usd: float) -> None:
        """Add to the session's running totals (an increment: no version check needed,
        and transitions never write these columns unless they change them)."""


class CheckpointRepository(Protocol):
    async def add(self, checkpoint: Checkpoint) -> None: ...

    async def prune(self, session_id: UUID, keep_from_seq: int) -> int:
        """Delete checkpoints older than ``keep_from_seq``; returns how many."""

    async def get(self, checkpoint_id: UUID) -> Checkpoint | None: ...

    async def latest(self, session_id: UUID) -> Checkpoint | None: ...

    async def list(self, session_id: UUID, offset: int, limit: int) -> tuple[list[Checkpoint], int]:
        """Newest first, with the total count."""


class EffectRepository(Protocol):
    async def record(self, effect: Effect) -> tuple[Effect, bool]:
        """Insert ``effect`` unless its key is taken; the entry stored under the key, and
        whether it is the one just inserted."""

    async def get(self, key: str) -> Effect | None: ...

    async def finish(self, effect: Effect) -> bool:
        """Mark a PENDING entry DONE; False when it was not PENDING any more."""

    async def pending(self, *, created_before: datetime | None = None) -> list[Effect]:
        """PENDING entries (made before ``created_before``), oldest first."""

    async def sessions_with_pending_writes(self, session_ids: Sequence[UUID]) -> set[UUID]:
        """Which of the sessions have files still to be written into their workspace."""

    async def of_session(
        self, session_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Effect], int]:
        """Oldest first, with the total count."""


class EventRepository(Protocol):
    async def append(
        self, new: Sequence[NewEvent], *, reserved: Mapping[UUID, int] | None = None
    ) -> None:
        """Store events in order (written when the unit of work commits), numbering
        session events consecutively per session. ``reserved`` maps a session to the
        last of the numbers already reserved for its events in ``new`` (by
        ``SessionRepository.save``)."""

    async def for_session(
        self,
        session_id: UUID,
        *,
        after_seq: int,
        limit: int,
        types: Sequence[EventType] = (),
    ) -> list[Event]: ...

    async def after(
        self,
        after_id: int,
        *,
        limit: int,
        types: Sequence[EventType] = (),
        sessions_only: bool = False,
    ) -> list[Event]:
        """The whole log after a global id, in commit order (ids are given out in the
        order their transactions commit, so ``id > last seen`` never skips one)."""

    async def latest(self, *, limit: int, types: Sequence[EventType] = ()) -> list[Event]:
        """The newest events of the log (of ``types`` if given), newest first."""

    async def last_id(self) -> int: ...

    async def touched(
        self, after_id: int, types: Sequence[EventType]
    ) -> tuple[list[tuple[UUID | None, EventType, str | None]], int]:
        """The distinct (session, type, the state a transition went to) of the events of
        ``types`` after ``after_id``, and the newest id looked at (``after_id`` when
        there is none), in one read."""


class TaskRepository(Protocol):
    async def lock_family(self, key: UUID) -> None:
        """Hold the family's write lock (key: session id, or root task id) until commit."""

    async def root_of(self, task_id: UUID) -> UUID: ...

    async def session_of(self, task_id: UUID) -> UUID | None:
        """The task's session; None when it has none, or does not exist."""

    async def add(self, task: Task) -> None:
        """Insert the task and its dependency edges."""

    async def add_all(self, tasks: Sequence[Task]) -> None:
        """Insert the tasks in the order given (a parent before its children), then all
        their dependency edges (so a task may depend on one given after it): a plan in
        two statements, not one per row. ``DuplicateKeyError`` as ``add_dependency``."""

    async def add_dependency(self, task_id: UUID, depends_on: UUID) -> None:
        """Raises ``DuplicateKeyError`` when the edge exists."""

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

    async def sessions_with_tasks_in(self, statuses: Sequence[TaskStatus]) -> list[UUID]:
        """The sessions that have a task in one of ``statuses``."""

    async def family(self, task: Task) -> list[Task]:
        """The tasks ``task`` may depend on: its session's, or its tree's without one."""

    async def subtree(self, root_id: UUID) -> list[Task]: ...

    async def save(self, before: Task, after: Task) -> bool:
        """Guarded write: False when the row is no longer ``before``."""

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


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    attempt: int
    path: str
    mime_type: str
    size_bytes: int
    sha256: str
    created_at: datetime


class AttemptRepository(Protocol):
    async def add(self, attempt: TaskAttempt) -> None: ...

    async def get(self, task_id: UUID, attempt: int) -> TaskAttempt | None: ...

    async def of_task(self, task_id: UUID) -> list[TaskAttempt]: ...

    async def open_of_agent(self, agent_id: UUID) -> list[TaskAttempt]: ...

    async def expired(self, before: datetime, *, limit: int) -> list[TaskAttempt]:
        """Open attempts whose lease ran out before ``before``, oldest expiry first."""

    async def renew(
        self, agent_id: UUID, expires_at: datetime, *, only: Sequence[UUID] | None = None
    ) -> list[TaskAttempt]:
        """Extend the agent's open attempts (of the tasks ``only``, when given); returns
        the renewed ones."""

    async def close(self, closed: TaskAttempt) -> bool:
        """Record the outcome; False when the attempt was closed already."""

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
        all); the raw material of ``domain.agent_records``."""


class ContextRepository(Protocol):
    async def add(self, context: Context) -> None: ...

    async def get(self, context_id: UUID) -> Context | None: ...

    async def find(
        self, *, scope: ContextScope | None, owner_ids: Sequence[UUID] = ()
    ) -> list[Context]: ...

    async def save(self, before: Context, after: Context) -> bool:
        """Guarded write: False when the row is no longer at ``before.version``."""

    async def delete_expired(self, now: datetime) -> int: ...

    async def delete_temporary_of(self, task_id: UUID) -> int: ...

    async def add_conflict(self, record: ConflictRecord) -> None: ...

    async def conflict(self, conflict_id: UUID) -> ConflictRecord | None: ...

    async def conflicts(
        self, context_id: UUID, status: ConflictStatus | None
    ) -> list[ConflictRecord]: ...

    async def settle(self, record: ConflictRecord) -> bool:
        """Mark an open conflict resolved; False if it was settled already."""


class AgentRepository(Protocol):
    async def add(self, agent: Agent) -> None:
        """Raises ``DuplicateKeyError`` when the name is taken."""

    async def get(self, agent_id: UUID) -> Agent | None: ...

    async def all(self) -> list[Agent]:
        """Every registered agent, by name."""

    async def candidates(self, capabilities: Sequence[str]) -> list[Agent]:
        """Agents holding every capability, HEALTHY or DEGRADED, below capacity; by name."""

    async def holders(self, capabilities: Sequence[str]) -> list[Agent]:
        """Agents not OFFLINE holding every capability; by name."""

    async def save(self, before: Agent, after: Agent) -> bool:
        """Guarded write: False when the row is no longer at ``before.version``."""

    async def remove(self, agent_id: UUID) -> bool: ...

    async def count_active(self) -> int:
        """Agents not OFFLINE."""


class OperatorTokenRepository(Protocol):
    async def add(self, token: OperatorToken) -> None:
        """Raises ``DuplicateKeyError`` when the name is taken."""

    async def by_digest(self, digest: str) -> OperatorToken | None: ...

    async def by_name(self, name: str) -> OperatorToken | None: ...

    async def all(self) -> list[OperatorToken]:
        """Every token, revoked ones too, oldest first."""

    async def revoke(self, name: str, at: datetime) -> bool:
        """False when no active token has that name."""


class WebhookRepository(Protocol):
    async def add(self, webhook: Webhook) -> None:
        """Raises ``DuplicateKeyError`` when the name is taken."""

    async def get(self, webhook_id: UUID) -> Webhook | None: ...

    async def all(self, *, active_only: bool = False) -> list[Webhook]:
        """Oldest first."""

    async def delete(self, webhook_id: UUID) -> bool:
        """Delete the webhook and its deliveries; False when there is none."""

    async def set_active(self, webhook_id: UUID, active: bool, last_event_id: int | None) -> bool:
        """Turn it on or off (moving its log position to ``last_event_id`` if given)."""

    async def advance(self, webhook_id: UUID, last_event_id: int) -> None:
        """Move its log position forward to ``last_event_id`` (never back)."""

    async def queue(self, delivery: Delivery) -> bool:
        """Insert; False when the webhook has a delivery for that event already."""

    async def delivery(self, delivery_id: UUID) -> Delivery | None: ...

    async def deliveries(
        self, webhook_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Delivery], int]:
        """Newest first, with the total count."""

    async def due(self, now: datetime, *, limit: int) -> list[tuple[Delivery, Webhook]]:
        """Pending deliveries of active webhooks due at ``now``, oldest first."""

    async def save_delivery(self, before: Delivery, after: Delivery) -> bool:
        """Guarded write: False when the row is no longer at ``before``'s status and
        attempt count."""


class DuplicateKeyError(Exception):
    """A uniqueness constraint refused the write (raised by repositories)."""


class UnitOfWork(Protocol):
    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def checkpoints(self) -> CheckpointRepository: ...

    @property
    def events(self) -> EventRepository: ...

    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def contexts(self) -> ContextRepository: ...

    @property
    def agents(self) -> AgentRepository: ...

    @property
    def attempts(self) -> AttemptRepository: ...

    @property
    def operator_tokens(self) -> OperatorTokenRepository: ...

    @property
    def webhooks(self) -> WebhookRepository: ...

    @property
    def effects(self) -> EffectRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork:
        """A unit of work that may write."""

    def reader(self) -> UnitOfWork:
        """A unit of work that only reads (never blocks writers)."""


class ArtifactWriter(Protocol):
    """Puts artifacts into a workspace directory without ever leaving it."""

    def check(self, root: Path, relative: PurePosixPath) -> None:
        """Raise ``ArtifactPathRefused`` if what exists on disk would lead the write out."""

    def write(self, root: Path, relative: PurePosixPath, content: bytes) -> Path: ...

    def read(self, root: Path, relative: PurePosixPath) -> bytes | None:
        """The regular file there, or None (never following a link)."""


Clock = Callable[[], datetime]


class TreeBinding(Protocol):
    """A session's git working tree as the tree keeper made it."""

    @property
    def path(self) -> Path: ...

    @property
    def branch(self) -> str: ...

    @property
    def base_commit(self) -> str: ...

    @property
    def source(self) -> Path | None: ...


class WorkingTrees(Protocol):
    """Sessions' own git working trees (``workspaces.worktrees``)."""

    async def prepare(self, session_id: UUID, workspace: Path | None) -> TreeBinding: ...

    async def binding(self, session_id: UUID) -> TreeBinding | None:
        """The session's tree as recorded, without making one."""

    async def fork(
        self, path_from: Path, commit: str, session_id: UUID, source: Path | None
    ) -> TreeBinding: ...

    async def commit(self, path: Path, message: str, *, keys: Sequence[str] = ()) -> str:
        """Commit the whole tree; the sha. ``keys``: the effects it is, each found by
        ``find_commit``."""

    async def find_commit(self, path: Path, key: str) -> str | None:
        """The commit made with ``key`` on the tree's branch, if any."""

    async def changed_since(self, path: Path, commit: str) -> bool:
        """Whether the tree's files (untracked ones too) or its HEAD differ from
        ``commit``."""

    async def restore(self, path: Path, commit: str) -> None: ...

    async def diff(self, path: Path, base: str) -> str: ...

    async def changed_files(self, path: Path, base: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class ProposedPlan:
    answer: str
    """The architect's answer, untrusted (``domain.agent_plans`` checks it)."""
    tokens_used: int = 0
    cost_usd: float = 0.0


class Planner(Protocol):
    """Asks the architect agent for a session's plan."""

    async def propose(self, session: Session, request: str) -> ProposedPlan: ...
