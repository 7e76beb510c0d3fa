"""Session use cases: create, query, move through the lifecycle, retry, checkpoint.

Every public method that writes is one unit of work: the guarded update of the session
row and its history row commit together, or not at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import structlog

from ..domain import events
from ..domain.checkpoint import Checkpoint, CheckpointEntry, oldest_kept_seq
from ..domain.effects import CHECKPOINT_PAYLOAD, Effect, finished
from ..domain.errors import (
    AlreadyRetried,
    CapacityExhausted,
    Conflict,
    IdempotencyKeyReused,
    IllegalTransition,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    VersionConflict,
)
from ..domain.priorities import Priority
from ..domain.session import (
    Actor,
    Session,
    Transition,
    WorktreeBinding,
    creation_record,
    transition,
)
from ..domain.session_actions import SessionAction, needs_slot, resolve_action
from ..domain.session_options import SessionOptions, session_options
from ..domain.session_outcomes import OutcomeTally, tally
from ..domain.session_states import (
    RETRYABLE_STATES,
    RUNNING_STATES,
    SessionState,
)
from .ports import (
    Clock,
    DuplicateKeyError,
    SessionQuery,
    SessionTotals,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = structlog.get_logger("industrial_orchestrator.services.session")

MAX_CHECKPOINT_DATA_BYTES = 1024 * 1024
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
class Fork:
    """What a fork starts from, and what it changes."""

    checkpoint_id: UUID
    amendment: str | None = None
    """An extra instruction for the tasks still to do."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Options (budget, verification, parallelism...) to change from the source's."""
    title: str | None = None
    start: bool = False


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
        self._max_running = max_running
        self._retention = checkpoint_retention
        self._default_priority = default_priority
        self._clock = clock

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
                    session, started = await self._apply(uow, session, SessionAction.START, None)
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
        _log_transition(started)
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
            return _found(await uow.sessions.get(session_id), session_id)

    async def search(self, query: SessionQuery) -> tuple[list[Session], int]:
        async with self._uow.reader() as uow:
            return await uow.sessions.search(query)

    async def history(self, session_id: UUID) -> list[Transition]:
        async with self._uow.reader() as uow:
            _found(await uow.sessions.get(session_id), session_id)
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
                    session = await self._load(uow, session_id, expected_version)
                    moved, record = await self._apply(uow, session, action, reason, actor)
                    await uow.commit()
                break
            except VersionConflict:
                if attempt == attempts:
                    raise
        _log_transition(record)
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
            session = await self._load(uow, session_id, expected_version)
            if needs_slot(session, target) and not await self._slot_free(uow):
                raise CapacityExhausted(
                    f"No running slot is free for session {session_id}",
                    {"current_state": session.status.value},
                )
            moved, record = transition(
                session, target, now=self._clock(), actor=actor, reason=reason
            )
            await self._record(uow, session, moved, record)
            await uow.commit()
        _log_transition(record)
        await self._rebalance(session, moved)
        return moved

    async def _rebalance(self, before: Session | None, after: Session) -> None:
        """Keep free slots and the queue from coexisting, after a commit.

        Two rules close every race between a session that queues and one that frees its
        slot at the same moment: whoever frees a slot looks at the queue after its own
        commit; whoever queues tries a promotion after its own commit. Whichever of the
        two commits last sees the other's commit.
        """
        queued_now = after.status == SessionState.QUEUED and (
            before is None or before.status != SessionState.QUEUED
        )
        freed = before is not None and before.holds_running_slot and not after.holds_running_slot
        if queued_now:
            await self.promote_queued()
        elif freed:
            async with self._uow.reader() as uow:
                if await uow.sessions.next_queued() is None:
                    return
            await self.promote_queued()

    async def promote_queued(self) -> list[Session]:
        """Start QUEUED sessions while running slots are free: CRITICAL first, then oldest."""
        promoted: list[Session] = []
        while True:
            async with self._uow() as uow:
                if not await self._slot_free(uow):
                    break
                queued = await uow.sessions.next_queued()
                if queued is None:
                    break
                moved, record = transition(
                    queued,
                    SessionState.RUNNING,
                    now=self._clock(),
                    actor=Actor.SCHEDULER,
                    reason="promoted from queue",
                )
                await self._record(uow, queued, moved, record)
                await uow.commit()
            _log_transition(record)
            promoted.append(moved)
        return promoted

    async def retry(self, session_id: UUID, *, start: bool = False) -> Session:
        """Create the next attempt of a FAILED, TIMEOUT or STOPPED session.

        The old session stays as it was; the new one records ``retry_of`` and begins from
        the old one's last checkpoint. A session is retried at most once.
        """
        async with self._uow() as uow:
            old = _found(await uow.sessions.get(session_id), session_id)
            if old.status not in RETRYABLE_STATES:
                raise IllegalTransition(
                    f"Cannot retry session {session_id}: it is {old.status.value}; only "
                    "FAILED, TIMEOUT or STOPPED sessions can be retried",
                    {
                        "current_state": old.status.value,
                        "action": "retry",
                        "retryable_states": sorted(s.value for s in RETRYABLE_STATES),
                    },
                )
            already = await uow.sessions.find_retry(session_id)
            if already is not None:
                raise _already_retried(session_id, already.id)
            checkpoint = await uow.checkpoints.latest(session_id)
            now = self._clock()
            fresh = Session(
                id=uuid4(),
                title=old.title,
                initial_prompt=old.initial_prompt,
                priority=old.priority,
                status=SessionState.PENDING,
                workspace=old.workspace,
                metadata=dict(old.metadata),
                options=old.options,
                created_at=now,
                updated_at=now,
                retry_of=old.id,
                attempt=old.attempt + 1,
                restored_from_checkpoint=checkpoint.id if checkpoint else None,
            )
            try:
                await uow.sessions.add(fresh, None, None)
            except DuplicateKeyError:
                raced = await self._find_retry(session_id)
                raise _already_retried(session_id, raced) from None
            await uow.sessions.add_transition(
                replace(
                    creation_record(fresh, Actor.OPERATOR),
                    reason=f"retry of {old.id} (attempt {fresh.attempt})",
                )
            )
            await uow.events.append([events.session_created(fresh)])
            if checkpoint is not None:
                await self._write_checkpoint(
                    uow,
                    fresh.id,
                    label=checkpoint.label,
                    reason=f"restored from checkpoint {checkpoint.id} of session {old.id}",
                    data=checkpoint.data,
                )
            started = None
            if start:
                fresh, started = await self._apply(uow, fresh, SessionAction.START, None)
            await uow.commit()
        log.info(
            "session_retried",
            session_id=str(fresh.id),
            retry_of=str(old.id),
            attempt=fresh.attempt,
            checkpoint_id=str(checkpoint.id) if checkpoint else None,
        )
        _log_transition(started)
        await self._rebalance(None, fresh)
        return fresh

    async def fork(self, session_id: UUID, fork: Fork) -> Session:
        """A new session that starts from one of ``session_id``'s checkpoints: its files
        (the working tree at the checkpoint's commit) and the tasks finished by then, with
        ``fork.amendment`` added to the prompt of the tasks still to do and
        ``fork.options`` instead of the source's, when given. The source is left as it is,
        in whatever state, and may be forked any number of times."""
        async with self._uow() as uow:
            source = _found(await uow.sessions.get(session_id), session_id)
            checkpoint = await uow.checkpoints.get(fork.checkpoint_id)
            if checkpoint is None or checkpoint.session_id != session_id:
                raise NotFound(
                    f"Session {session_id} has no checkpoint {fork.checkpoint_id} (it may "
                    f"have been rotated out: only the newest {self._retention} "
                    "are kept)",
                    {"session_id": str(session_id), "checkpoint_id": str(fork.checkpoint_id)},
                )
            amendment = fork.amendment.strip() if fork.amendment else None
            options = session_options(
                **{**source.options.to_json(), **fork.overrides, "amendment": amendment}
            )
            if options.agents:
                known = {agent.name for agent in await uow.agents.all()}
                unknown = [name for name in options.agents if name not in known]
                if unknown:
                    raise InvalidInput(
                        "No agent is registered as " + ", ".join(repr(n) for n in unknown),
                        {"field": "agents", "unknown": unknown},
                    )
            prompt = source.initial_prompt
            if amendment:
                prompt = f"{prompt}\n\n{amendment}"
            now = self._clock()
            fresh = Session(
                id=uuid4(),
                title=fork.title or source.title,
                initial_prompt=prompt,
                priority=source.priority,
                status=SessionState.PENDING,
                workspace=source.workspace,
                metadata=dict(source.metadata),
                options=options,
                created_at=now,
                updated_at=now,
                forked_from=source.id,
                restored_from_checkpoint=checkpoint.id,
            )
            await uow.sessions.add(fresh, None, None)
            await uow.sessions.add_transition(
                replace(
                    creation_record(fresh, Actor.OPERATOR),
                    reason=f"fork of {source.id} at checkpoint #{checkpoint.seq} "
                    f"({checkpoint.label})",
                )
            )
            await uow.events.append([events.session_created(fresh)])
            await self._write_checkpoint(
                uow,
                fresh.id,
                label=checkpoint.label,
                reason=f"forked from checkpoint {checkpoint.id} of session {source.id}",
                data=checkpoint.data,
            )
            started = None
            if fork.start:
                fresh, started = await self._apply(uow, fresh, SessionAction.START, None)
            await uow.commit()
        log.info(
            "session_forked",
            session_id=str(fresh.id),
            forked_from=str(source.id),
            checkpoint_id=str(checkpoint.id),
        )
        _log_transition(started)
        await self._rebalance(None, fresh)
        return fresh

    async def forks_of(self, session_id: UUID) -> list[UUID]:
        async with self._uow.reader() as uow:
            _found(await uow.sessions.get(session_id), session_id)
            return await uow.sessions.forks_of(session_id)

    async def retried_as(self, session_id: UUID) -> UUID | None:
        """The session created to retry this one, if any."""
        return await self._find_retry(session_id)

    async def _find_retry(self, session_id: UUID) -> UUID | None:
        async with self._uow.reader() as uow:
            found = await uow.sessions.find_retry(session_id)
        return found.id if found else None

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
        entry = CheckpointEntry(label, reason, data, effect)
        (checkpoint,) = await self.add_checkpoints(session_id, [entry])
        return checkpoint

    async def add_checkpoints(
        self, session_id: UUID, entries: Sequence[CheckpointEntry]
    ) -> list[Checkpoint]:
        """Record checkpoints in order, in one transaction, each marking its effect DONE;
        none (``Conflict``) when the session's checkpoints are closed or another process
        finished one of the effects first."""
        for entry in entries:
            size = len(json.dumps(entry.data, separators=(",", ":")).encode())
            if size > MAX_CHECKPOINT_DATA_BYTES:
                raise PayloadTooLarge(
                    f"Checkpoint data is {size} bytes; the limit is {MAX_CHECKPOINT_DATA_BYTES}",
                    {"size": size, "limit": MAX_CHECKPOINT_DATA_BYTES},
                )
        recorded: list[Checkpoint] = []
        async with self._uow() as uow:
            session = _found(await uow.sessions.get(session_id), session_id)
            if session.is_terminal and session.status != SessionState.PARTIALLY_COMPLETED:
                raise Conflict(
                    f"Session {session_id} is {session.status.value}: a finished session's "
                    "checkpoints are kept for audit and cannot change",
                    {"current_state": session.status.value},
                )
            for entry in entries:
                checkpoint = await self._write_checkpoint(
                    uow, session_id, label=entry.label, reason=entry.reason, data=entry.data
                )
                recorded.append(checkpoint)
                effect = entry.effect
                if effect is not None and not await uow.effects.finish(
                    finished(
                        effect,
                        self._clock(),
                        {"commit": entry.data.get("commit"), "checkpoint_id": str(checkpoint.id)},
                        drop=[CHECKPOINT_PAYLOAD],
                    )
                ):
                    raise Conflict(
                        f"Checkpoint {effect.key} was recorded meanwhile",
                        {"effect": effect.key},
                    )
            await uow.commit()
        for checkpoint in recorded:
            log.info(
                "checkpoint_created",
                session_id=str(session_id),
                checkpoint_id=str(checkpoint.id),
                seq=checkpoint.seq,
            )
        return recorded

    async def checkpoint(self, checkpoint_id: UUID) -> Checkpoint | None:
        async with self._uow.reader() as uow:
            return await uow.checkpoints.get(checkpoint_id)

    async def bind_worktree(self, session_id: UUID, binding: WorktreeBinding) -> Session:
        """Record where the session works, once; the session as it is then."""
        async with self._uow() as uow:
            await uow.sessions.bind_worktree(session_id, binding)
            session = _found(await uow.sessions.get(session_id), session_id)
            await uow.commit()
        return session

    async def checkpoints(
        self, session_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Checkpoint], int]:
        async with self._uow.reader() as uow:
            _found(await uow.sessions.get(session_id), session_id)
            return await uow.checkpoints.list(session_id, offset, limit)

    async def _write_checkpoint(
        self,
        uow: UnitOfWork,
        session_id: UUID,
        *,
        label: str,
        reason: str | None,
        data: dict[str, Any],
    ) -> Checkpoint:
        seq = await uow.sessions.next_checkpoint_seq(session_id)
        checkpoint = Checkpoint(
            id=uuid4(),
            session_id=session_id,
            seq=seq,
            label=label,
            reason=reason,
            data=data,
            created_at=self._clock(),
        )
        await uow.checkpoints.add(checkpoint)
        await uow.checkpoints.prune(session_id, oldest_kept_seq(seq, self._retention))
        await uow.events.append([events.checkpoint_created(checkpoint)])
        return checkpoint

    # -- shared steps -----------------------------------------------------------------

    async def _load(
        self, uow: UnitOfWork, session_id: UUID, expected_version: int | None
    ) -> Session:
        session = _found(await uow.sessions.get(session_id), session_id)
        if expected_version is not None and session.version != expected_version:
            raise _stale(session, expected_version)
        return session

    async def _apply(
        self,
        uow: UnitOfWork,
        session: Session,
        action: SessionAction,
        reason: str | None,
        actor: Actor = Actor.OPERATOR,
    ) -> tuple[Session, Transition]:
        target = resolve_action(session, action, slot_free=True)
        if needs_slot(session, target):
            free = await self._slot_free(uow)
            if free and session.status == SessionState.PENDING:
                # A slot that just came free belongs to the queue (by priority, then age),
                # not to whoever starts at that moment: join the queue behind them.
                free = await uow.sessions.next_queued() is None
            target = resolve_action(session, action, slot_free=free)
        if target == SessionState.QUEUED and reason is None:
            reason = "all running slots taken (MAX_CONCURRENT_SESSIONS)"
        moved, record = transition(session, target, now=self._clock(), actor=actor, reason=reason)
        await self._record(uow, session, moved, record)
        return moved, record

    async def _slot_free(self, uow: UnitOfWork) -> bool:
        """Whether a running slot is free; holds the slot lock until the transaction ends."""
        await uow.sessions.lock_running_slots()
        return await uow.sessions.count_running() < self._max_running

    async def _record(
        self, uow: UnitOfWork, before: Session, after: Session, record: Transition
    ) -> None:
        """The three writes of a transition, inside the caller's transaction: the guarded
        row update, the history row and the event (so an event exists if and only if the
        transition commits)."""
        last_event_seq = await uow.sessions.save(before, after, reserve_events=1)
        if last_event_seq is None:
            raise _stale(before, before.version, concurrent=True)
        await uow.sessions.add_transition(record)
        await uow.events.append(
            [events.session_transition(record, after)], reserved={after.id: last_event_seq}
        )


def _log_transition(record: Transition | None) -> None:
    if record is None:
        return
    log.info(
        _event_name(record),
        session_id=str(record.session_id),
        from_state=record.from_state.value if record.from_state else None,
        to_state=record.to_state.value,
        actor=record.actor.value,
        reason=record.reason,
    )


def _event_name(record: Transition) -> str:
    if record.to_state == SessionState.RUNNING:
        fresh = record.from_state in (SessionState.PENDING, SessionState.QUEUED)
        return "session_started" if fresh else "session_resumed"
    return f"session_{record.to_state.value.lower()}"


def _found(session: Session | None, session_id: UUID) -> Session:
    if session is None:
        raise NotFound(f"Session {session_id} does not exist", {"session_id": str(session_id)})
    return session


def _stale(session: Session, expected_version: int, *, concurrent: bool = False) -> VersionConflict:
    why = (
        "was changed by a concurrent request"
        if concurrent
        else f"is at version {session.version}, not {expected_version}"
    )
    return VersionConflict(
        f"Session {session.id} {why}; reload it and try again",
        {
            "session_id": str(session.id),
            "expected_version": expected_version,
            **({} if concurrent else {"current_version": session.version}),
            "current_state": session.status.value,
        },
    )


def _already_retried(session_id: UUID, retry_id: UUID | None) -> AlreadyRetried:
    return AlreadyRetried(
        f"Session {session_id} was already retried"
        + (f" as session {retry_id}; retry that one instead" if retry_id else ""),
        {"session_id": str(session_id), "retry_session_id": str(retry_id) if retry_id else None},
    )
