"""What the services need of the sessions' rows, their transitions and checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from ...domain.effects import Effect
from ...domain.events import NewEvent
from ...domain.priorities import Priority
from ...domain.sessions.checkpoint import Checkpoint
from ...domain.sessions.session import Session, Transition, WorktreeBinding
from ...domain.sessions.states import SessionState
from ...domain.tasks.task import Task


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

    async def keep(
        self, session_id: UUID, owner: str, now: datetime, until: datetime
    ) -> bool | None:
        """``own`` where there is nothing to take over: take the lease when it is free, or
        renew it when ``owner`` holds it (even expired), until ``until`` (True). False when
        another holds it still (or there is no such session); None, nothing done, when
        another held it and its lease ran out before ``now`` (a take-over: ``own``). One
        statement where the database can: it needs no transaction around it."""

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

    async def take_running_slot(
        self, session_id: UUID, capacity: int, *, new: bool = False
    ) -> bool:
        """Give the session a free running slot among the first ``capacity``; whether it
        got one. None is free while a slot above ``capacity`` is still held (the limit
        was lowered and those sessions still run). Concurrent takers get different
        slots without waiting for one another; a session never gets two (a taker for
        the same session waits for the other's transaction, then finds it has one).
        ``new``: the session was added in this transaction, so no other taker can see it
        (nothing to wait for)."""

    async def give_back_running_slot(self, session_id: UUID) -> None:
        """Free the session's running slot, if it holds one."""

    async def lock_queue(self) -> None:
        """Order the transactions that put a session in the queue or promote one from
        it, until this one ends: a promotion then sees every session queued before it
        in commit order (starts that find a slot free take no part)."""

    async def next_queued(self) -> Session | None:
        """The QUEUED session to promote first: highest priority, then oldest."""

    async def anyone_queued(self) -> bool:
        """Whether any session waits QUEUED (``next_queued`` without reading it)."""

    async def totals(self) -> SessionTotals: ...

    async def next_checkpoint_seq(
        self, session_id: UUID, *, unless_in: Sequence[SessionState] = (), count: int = 1
    ) -> int | None:
        """Take the session's next ``count`` checkpoint numbers; the first of them, or
        None (nothing taken) when its state is one of ``unless_in`` (under the row's lock:
        a session ending meanwhile is seen ended). ``LookupError`` when there is no such
        session."""

    async def add_usage(self, session_id: UUID, tokens: int, cost_usd: float) -> None:
        """Add to the session's running totals (an increment: no version check needed,
        and transitions never write these columns unless they change them)."""


def check_added_after(numbered: Sequence[Checkpoint], after_seq: int, keep_from: int) -> None:
    """``ValueError`` unless ``numbered`` can be ``CheckpointRepository.add_after``'s:
    some, numbered ``after_seq`` + 1 on, none of them below ``keep_from``."""
    expected = list(range(after_seq + 1, after_seq + 1 + len(numbered)))
    if not numbered or [c.seq for c in numbered] != expected:
        raise ValueError("checkpoints added after number N are numbered N + 1 on")
    if keep_from > after_seq + 1:
        raise ValueError("checkpoints added are never pruned with them")


class CheckpointRepository(Protocol):
    async def add(self, checkpoint: Checkpoint) -> None: ...

    async def prune(self, session_id: UUID, keep_from_seq: int) -> int:
        """Delete checkpoints older than ``keep_from_seq``; returns how many."""

    async def get(self, checkpoint_id: UUID) -> Checkpoint | None: ...

    async def latest(self, session_id: UUID) -> Checkpoint | None: ...

    async def add_numbered(
        self,
        session_id: UUID,
        drafts: Sequence[Checkpoint],
        finishing: Sequence[Effect],
        *,
        unless_in: Sequence[SessionState] = (),
    ) -> tuple[list[Checkpoint], int] | None:
        """Store ``drafts`` (their ``seq`` ignored) under the session's next numbers, in
        order, and mark each entry of ``finishing`` DONE as given where it is still
        PENDING: one statement where the database can. The checkpoints as stored and how
        many entries were marked DONE (fewer than given: someone finished one first; the
        caller rolls back). None, nothing stored or marked, when the session's state is
        one of ``unless_in`` (under its row's lock); ``LookupError`` when there is no
        such session."""

    async def add_after(
        self,
        session_id: UUID,
        numbered: Sequence[Checkpoint],
        new: Sequence[NewEvent],
        *,
        after_seq: int,
        keep_from: int,
        unless_in: Sequence[SessionState] = (),
    ) -> bool | None:
        """Store ``numbered`` (numbered ``after_seq`` + 1 on, in order) and append ``new``
        (their events), deleting the session's checkpoints numbered below ``keep_from``
        (none of these), only while the session's last checkpoint is number
        ``after_seq`` and its state is not one of ``unless_in`` (under its row's lock):
        one statement that needs no transaction around it, where the database can. True
        when stored; False when the number or the state stood in the way, None when there
        is no such session: then the caller leaves without committing (where it took
        several statements, some wrote)."""

    async def latest_with_session(
        self, session_id: UUID
    ) -> tuple[Session | None, Checkpoint | None]:
        """The session and its newest checkpoint, read together: in one statement where
        the database can (an engine step reads both, after every result)."""

    async def latest_with_plan(
        self, session_id: UUID
    ) -> tuple[Session | None, Checkpoint | None, list[Task]]:
        """``latest_with_session`` and the session's tasks (oldest first), read together:
        in one statement where the database can (what an engine step decides on)."""

    async def list(self, session_id: UUID, offset: int, limit: int) -> tuple[list[Checkpoint], int]:
        """Newest first, with the total count."""
