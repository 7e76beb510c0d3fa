"""Recording a session's checkpoints, keeping only the newest ``retention`` of them.

A checkpoint gets the session's next sequence number and, in the same transaction, the
oldest ones beyond the retention are pruned and a ``checkpoint_created`` event is appended.
When the checkpoint stands for a commit in the side-effect ledger, that effect is marked
DONE in the same transaction too, so the ledger and the checkpoints never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID, uuid4

import structlog

from ..domain import events
from ..domain.effects import CHECKPOINT_PAYLOAD, Effect, finished
from ..domain.errors import Conflict, PayloadTooLarge
from ..domain.sessions.checkpoint import Checkpoint, CheckpointEntry, oldest_kept_seq
from ..domain.sessions.session import Session
from ..domain.sessions.states import SessionState, is_terminal
from .ports import Clock, UnitOfWork, UnitOfWorkFactory
from .session_transitions import found

# A finished session's checkpoints are closed, except a partly completed one's (its retry
# starts from them).
_CLOSED = [
    state
    for state in SessionState
    if is_terminal(state) and state != SessionState.PARTIALLY_COMPLETED
]
log = structlog.get_logger("industrial_orchestrator.services.session")

MAX_CHECKPOINT_DATA_BYTES = 1024 * 1024


class CheckpointRecords:
    def __init__(self, uow: UnitOfWorkFactory, *, retention: int, clock: Clock) -> None:
        self._uow = uow
        self.retention = retention
        self._clock = clock

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
        self,
        session_id: UUID,
        entries: Sequence[CheckpointEntry],
        *,
        after_seq: int | None = None,
    ) -> list[Checkpoint]:
        """Record checkpoints in order, in one transaction, their numbers taken together,
        each marking its effect DONE; none (``Conflict``) when the session's checkpoints
        are closed, another process finished one of the effects first, or (with
        ``after_seq``) the session's last checkpoint is no longer number ``after_seq``."""
        for entry in entries:
            size = len(json.dumps(entry.data, separators=(",", ":")).encode())
            if size > MAX_CHECKPOINT_DATA_BYTES:
                raise PayloadTooLarge(
                    f"Checkpoint data is {size} bytes; the limit is {MAX_CHECKPOINT_DATA_BYTES}",
                    {"size": size, "limit": MAX_CHECKPOINT_DATA_BYTES},
                )
        if not entries:
            return []
        drafts = [
            Checkpoint(
                id=uuid4(),
                session_id=session_id,
                seq=0,  # numbered as stored
                label=entry.label,
                reason=entry.reason,
                data=entry.data,
                created_at=self._clock(),
            )
            for entry in entries
        ]
        if (
            after_seq is not None
            and len(entries) <= self.retention
            and not any(entry.effect for entry in entries)
        ):
            return await self._add_after(session_id, drafts, after_seq)
        finishing = [
            finished(
                entry.effect,
                self._clock(),
                {"commit": entry.data.get("commit"), "checkpoint_id": str(draft.id)},
                drop=[CHECKPOINT_PAYLOAD],
            )
            for entry, draft in zip(entries, drafts, strict=True)
            if entry.effect is not None
        ]
        async with self._uow() as uow:
            # The numbers are taken only while the session is open, under its row's lock:
            # a session ending meanwhile gets no checkpoint.
            try:
                added = await uow.checkpoints.add_numbered(
                    session_id, drafts, finishing, unless_in=_CLOSED
                )
            except LookupError:
                added = None  # no such session: ``found`` says so below
            if added is None:
                raise _closed(found(await uow.sessions.get(session_id), session_id))
            recorded, done = added
            if after_seq is not None and recorded[0].seq != after_seq + 1:
                raise _outrun(session_id, after_seq)  # leaving without a commit undoes it all
            if done != len(finishing):  # leaving without a commit undoes it all
                keys = [effect.key for effect in finishing]
                raise Conflict(
                    f"Checkpoint {', '.join(keys)} was recorded meanwhile",
                    {"effect": keys[0] if len(keys) == 1 else keys},
                )
            await self._pruned(uow, session_id, recorded[-1].seq)
            await uow.events.append([events.checkpoint_created(c) for c in recorded])
            await uow.commit()
        _log_created(recorded)
        return recorded

    async def _add_after(
        self, session_id: UUID, drafts: Sequence[Checkpoint], after_seq: int
    ) -> list[Checkpoint]:
        """``add_checkpoints`` when the numbers are known (the last checkpoint is number
        ``after_seq``) and no entry finishes an effect: the checkpoints, their events and
        the pruning in one statement where the database can (an engine step records a
        task's checkpoint so, after almost every result)."""
        recorded = [replace(d, seq=after_seq + n) for n, d in enumerate(drafts, start=1)]
        keep_from = oldest_kept_seq(recorded[-1].seq, self.retention)
        async with self._uow.single() as uow:
            added = await uow.checkpoints.add_after(
                session_id,
                recorded,
                [events.checkpoint_created(c) for c in recorded],
                after_seq=after_seq,
                keep_from=keep_from,
                unless_in=_CLOSED,
            )
            if added:
                await uow.commit()
        if not added:  # nothing of it committed
            session = found(await self._session(session_id), session_id)
            if session.status in _CLOSED:
                raise _closed(session)
            raise _outrun(session_id, after_seq)
        _log_created(recorded)
        return recorded

    async def _session(self, session_id: UUID) -> Session | None:
        async with self._uow.reader() as uow:
            return await uow.sessions.get(session_id)

    async def get(self, checkpoint_id: UUID) -> Checkpoint | None:
        async with self._uow.reader() as uow:
            return await uow.checkpoints.get(checkpoint_id)

    async def of_session(
        self, session_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Checkpoint], int]:
        """A page of the session's kept checkpoints and how many there are."""
        async with self._uow.reader() as uow:
            found(await uow.sessions.get(session_id), session_id)
            return await uow.checkpoints.list(session_id, offset, limit)

    async def write(
        self,
        uow: UnitOfWork,
        session_id: UUID,
        *,
        label: str,
        reason: str | None,
        data: dict[str, Any],
        seq: int | None = None,
    ) -> Checkpoint:
        """Add the session's next checkpoint inside the caller's transaction, pruning those
        beyond the retention. ``seq``: its number, if the caller has taken it."""
        if seq is None:
            seq = await uow.sessions.next_checkpoint_seq(session_id)
            assert seq is not None  # taken whatever the state
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
        await self._pruned(uow, session_id, seq)
        await uow.events.append([events.checkpoint_created(checkpoint)])
        return checkpoint

    async def _pruned(self, uow: UnitOfWork, session_id: UUID, newest_seq: int) -> None:
        """Delete the session's checkpoints beyond the retention, counted from its newest."""
        keep_from = oldest_kept_seq(newest_seq, self.retention)
        if keep_from > 1:  # below 1 there is nothing to prune: no statement for it
            await uow.checkpoints.prune(session_id, keep_from)


def _closed(session: Session) -> Conflict:
    return Conflict(
        f"Session {session.id} is {session.status.value}: a finished session's "
        "checkpoints are kept for audit and cannot change",
        {"current_state": session.status.value},
    )


def _outrun(session_id: UUID, after_seq: int) -> Conflict:
    return Conflict(
        f"Session {session_id} has a checkpoint after number {after_seq} already",
        {"session_id": str(session_id), "after_seq": after_seq},
    )


def _log_created(recorded: Sequence[Checkpoint]) -> None:
    for checkpoint in recorded:
        log.info(
            "checkpoint_created",
            session_id=str(checkpoint.session_id),
            checkpoint_id=str(checkpoint.id),
            seq=checkpoint.seq,
        )
