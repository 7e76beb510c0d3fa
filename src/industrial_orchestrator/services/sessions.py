"""Session use cases: create, query, move through the lifecycle; the one service the rest holds.

Every public method that writes is one unit of work: the guarded update of the session
row and its history row commit together, or not at all. ``SessionService`` owns creation,
the reads and the verbs, and hands the other concepts to their own modules: running slots
and the queue (``session_slots``), retries and forks (``session_lineage``), recording
checkpoints (``checkpoint_records``), and the writes of one transition
(``session_transitions``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import structlog

from ..domain import events
from ..domain.effects import Effect
from ..domain.errors import (
    CapacityExhausted,
    IdempotencyKeyReused,
    IllegalTransition,
    VersionConflict,
)
from ..domain.priorities import Priority
from ..domain.sessions.actions import SessionAction, needs_slot
from ..domain.sessions.checkpoint import Checkpoint, CheckpointEntry
from ..domain.sessions.options import SessionOptions
from ..domain.sessions.outcomes import OutcomeTally, tally
from ..domain.sessions.session import (
    Actor,
    Session,
    Transition,
    WorktreeBinding,
    creation_record,
    transition,
)
from ..domain.sessions.states import (
    RETRYABLE_STATES,
    RUNNING_STATES,
    SessionState,
)
from .checkpoint_records import CheckpointRecords
from .ports import (
    Clock,
    DuplicateKeyError,
    SessionQuery,
    SessionTotals,
    UnitOfWorkFactory,
)
from .session_lineage import Fork, SessionLineage
from .session_slots import RunningSlots
from .session_transitions import found, load, log_transition, record_transition

log = structlog.get_logger("industrial_orchestrator.services.session")

# Without an expected version the caller means "from whatever state it is in now":
# re-read and decide again this many times when a concurrent writer got there first.
_UNGUARDED_ATTEMPTS = 3


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewSession:
    title: str
    initial_prompt: str
    priority: Priority | None = None
    workspace: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    auto_start: bool = False
    options: SessionOptions = field(default_factory=SessionOptions)

    def fingerprint(self) -> str:
        """Identifies the request body, so a reused idempotency key can be told apart."""
        encoded = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionStats:
    by_state: dict[SessionState, int]
    total: int
    running: int
    outcomes: OutcomeTally
    success_rate: float | None
    average_duration_seconds: float | None
    tokens_used: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class Created:
    session: Session
    created: bool


@dataclass(frozen=True, slots=True)
class Started:
    session: Session
    retried: bool


class SessionService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        max_running: int,
        checkpoint_retention: int,
        default_priority: Priority = Priority.MEDIUM,
        clock: Clock = utc_now,
    ) -> None:
        self._uow = uow
        self._default_priority = default_priority
        self._clock = clock
        self._slots = RunningSlots(uow, max_running=max_running, clock=clock)
        self._checkpoints = CheckpointRecords(uow, retention=checkpoint_retention, clock=clock)
        self._lineage = SessionLineage(
            uow, slots=self._slots, checkpoints=self._checkpoints, clock=clock
        )

    # -- creation ---------------------------------------------------------------------

    async def create(self, draft: NewSession, *, idempotency_key: str | None = None) -> Created:
        """Record a new session (and start it if asked) before anyone is told it exists.

        The same ``idempotency_key`` with the same body returns the first session;
        with another body it is refused.
        """
        fingerprint = draft.fingerprint()
        if idempotency_key is not None:
            replay = await self._replay(idempotency_key, fingerprint)
            if replay is not None:
                return Created(replay, created=False)
        now = self._clock()
        session = Session(
            id=uuid4(),
            title=draft.title,
            initial_prompt=draft.initial_prompt,
            priority=draft.priority or self._default_priority,
            status=SessionState.PENDING,
            workspace=draft.workspace,
            metadata=dict(draft.metadata),
            options=draft.options,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self._uow() as uow:
                await uow.sessions.add(session, idempotency_key, fingerprint)
                await uow.sessions.add_transition(creation_record(session, Actor.OPERATOR))
                await uow.events.append([events.session_created(session)])
                started = None
                if draft.auto_start:
                    session, started = await self._slots.apply(
                        uow, session, SessionAction.START, None, new=True
                    )
                await uow.commit()
        except DuplicateKeyError:
            # Another request with the same key committed first: answer with its session.
            if idempotency_key is None:
                raise
            replay = await self._replay(idempotency_key, fingerprint)
            if replay is None:
                raise
            return Created(replay, created=False)
        log.info("session_created", session_id=str(session.id), priority=session.priority.value)
        log_transition(started)
        await self._rebalance(None, session)
        return Created(session, created=True)

    async def _replay(self, key: str, fingerprint: str) -> Session | None:
        async with self._uow.reader() as uow:
            previous = await uow.sessions.get_by_idempotency_key(key)
        if previous is None:
            return None
        if previous.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                f"Idempotency-Key '{key}' was already used for another request body "
                f"(session {previous.session.id}); use a new key for a new session",
                {"session_id": str(previous.session.id)},
            )
        return previous.session

    # -- queries ----------------------------------------------------------------------

    async def get(self, session_id: UUID) -> Session:
        async with self._uow.reader() as uow:
            return found(await uow.sessions.get(session_id), session_id)

    async def search(self, query: SessionQuery) -> tuple[list[Session], int]:
        async with self._uow.reader() as uow:
            return await uow.sessions.search(query)

    async def history(self, session_id: UUID) -> list[Transition]:
        async with self._uow.reader() as uow:
            found(await uow.sessions.get(session_id), session_id)
            return await uow.sessions.transitions(session_id)

    async def count_running(self) -> int:
        async with self._uow.reader() as uow:
            return await uow.sessions.count_running()

    async def stats(self) -> SessionStats:
        async with self._uow.reader() as uow:
            totals: SessionTotals = await uow.sessions.totals()
        outcomes = tally(totals.by_state)
        return SessionStats(
            by_state=totals.by_state,
            total=sum(totals.by_state.values()),
            running=sum(totals.by_state[state] for state in RUNNING_STATES),
            outcomes=outcomes,
            success_rate=outcomes.success_rate,
            average_duration_seconds=totals.average_duration_seconds,
            tokens_used=totals.tokens_used,
            cost_usd=totals.cost_usd,
        )

    # -- lifecycle --------------------------------------------------------------------

    async def act(
        self,
        session_id: UUID,
        action: SessionAction,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
        actor: Actor = Actor.OPERATOR,
    ) -> Session:
        """Apply an operator verb; raises ``IllegalTransition``, ``VersionConflict``,
        ``CapacityExhausted`` or ``NotFound``."""
        attempts = 1 if expected_version is not None else _UNGUARDED_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                async with self._uow() as uow:
                    session = await load(uow, session_id, expected_version)
                    moved, record = await self._slots.apply(uow, session, action, reason, actor)
                    await uow.commit()
                break
            except VersionConflict:
                if attempt == attempts:
                    raise
        log_transition(record)
        await self._rebalance(session, moved)
        return moved

    async def start(
        self, session_id: UUID, *, reason: str | None = None, expected_version: int | None = None
    ) -> Started:
        """``start``; on a FAILED, TIMEOUT or STOPPED session it starts a retry instead
        (ARCHITECTURE.md §4), since the session itself can never run again."""
        try:
            moved = await self.act(
                session_id, SessionAction.START, reason=reason, expected_version=expected_version
            )
        except IllegalTransition as refused:
            if refused.details.get("current_state") not in RETRYABLE_STATES:
                raise
            return Started(await self.retry(session_id, start=True), retried=True)
        return Started(moved, retried=False)

    async def move(
        self,
        session_id: UUID,
        target: SessionState,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
        actor: Actor = Actor.SYSTEM,
    ) -> Session:
        """A system transition with no operator verb (DEGRADED, TIMEOUT, ORPHANED, ...)."""
        async with self._uow() as uow:
            session = await load(uow, session_id, expected_version)
            if needs_slot(session, target) and not await self._slots.take(uow, session):
                raise CapacityExhausted(
                    f"No running slot is free for session {session_id}",
                    {"current_state": session.status.value},
                )
            moved, record = transition(
                session, target, now=self._clock(), actor=actor, reason=reason
            )
            await record_transition(uow, session, moved, record)
            await uow.commit()
        log_transition(record)
        await self._rebalance(session, moved)
        return moved

    async def _rebalance(self, before: Session | None, after: Session) -> None:
        """Keep free slots and the queue from coexisting, after a commit."""
        await self._slots.rebalance(before, after)

    async def promote_queued(self) -> list[Session]:
        """Start QUEUED sessions while running slots are free: CRITICAL first, then oldest."""
        return await self._slots.promote_queued()

    # -- lineage ----------------------------------------------------------------------

    async def retry(self, session_id: UUID, *, start: bool = False) -> Session:
        """Create the next attempt of a FAILED, TIMEOUT or STOPPED session.

        The old session stays as it was; the new one records ``retry_of`` and begins from
        the old one's last checkpoint. A session is retried at most once.
        """
        return await self._lineage.retry(session_id, start=start)

    async def fork(self, session_id: UUID, fork: Fork) -> Session:
        """A new session that starts from one of ``session_id``'s checkpoints, with
        ``fork.amendment`` and ``fork.overrides``; the source is left as it is."""
        return await self._lineage.fork(session_id, fork)

    async def forks_of(self, session_id: UUID) -> list[UUID]:
        return await self._lineage.forks_of(session_id)

    async def retried_as(self, session_id: UUID) -> UUID | None:
        """The session created to retry this one, if any."""
        return await self._lineage.retried_as(session_id)

    # -- checkpoints ------------------------------------------------------------------

    async def add_checkpoint(
        self,
        session_id: UUID,
        *,
        label: str,
        reason: str | None,
        data: dict[str, Any],
        effect: Effect | None = None,
    ) -> Checkpoint:
        """Record a checkpoint. With ``effect`` (its commit, in the side-effect ledger),
        the entry is marked DONE in the same transaction, or nothing is recorded
        (``Conflict``) when another process finished it first."""
        return await self._checkpoints.add_checkpoint(
            session_id, label=label, reason=reason, data=data, effect=effect
        )

    async def add_checkpoints(
        self,
        session_id: UUID,
        entries: Sequence[CheckpointEntry],
        *,
        after_seq: int | None = None,
    ) -> list[Checkpoint]:
        """Record checkpoints in order, in one transaction, each marking its effect DONE;
        none (``Conflict``) when the session's checkpoints are closed, another process
        finished one of the effects first, or (with ``after_seq``) another checkpoint
        came after number ``after_seq``."""
        return await self._checkpoints.add_checkpoints(session_id, entries, after_seq=after_seq)

    async def checkpoint(self, checkpoint_id: UUID) -> Checkpoint | None:
        return await self._checkpoints.get(checkpoint_id)

    async def checkpoints(
        self, session_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Checkpoint], int]:
        return await self._checkpoints.of_session(session_id, offset=offset, limit=limit)

    async def bind_worktree(
        self, session_id: UUID, binding: WorktreeBinding, *, note: str | None = None
    ) -> Session:
        """Record where the session works, once; the session as it is then. ``note``:
        a line for the session's terminal (SYSTEM), written in the same transaction."""
        async with self._uow() as uow:
            await uow.sessions.bind_worktree(session_id, binding)
            session = found(await uow.sessions.get(session_id), session_id)
            if note is not None:
                await uow.events.append(
                    events.log_lines(session_id, events.LogStream.SYSTEM, note, self._clock())
                )
            await uow.commit()
        return session
