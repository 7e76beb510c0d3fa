"""Checkpoints (``storage/checkpoint_repository.py`` in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from uuid import UUID

from ...domain.effects import Effect
from ...domain.events import NewEvent
from ...domain.sessions.checkpoint import Checkpoint
from ...domain.sessions.session import Session
from ...domain.sessions.states import SessionState
from ...domain.tasks.task import Task
from ...services.ports import check_added_after
from .effects import MemoryEffectRepository
from .events import MemoryEventRepository
from .sessions import SESSIONS, MemorySessionRepository
from .store import IntegrityViolation, Transaction, json_copy
from .tasks import MemoryTaskRepository

CHECKPOINTS = "checkpoints"


class MemoryCheckpointRepository:
    def __init__(self, tx: Transaction, events: MemoryEventRepository) -> None:
        self._tx = tx
        self._events = events

    def _of(self, session_id: UUID) -> list[Checkpoint]:
        found: list[Checkpoint] = self._tx.select(
            CHECKPOINTS, lambda checkpoint: checkpoint.session_id == session_id
        )
        return sorted(found, key=lambda checkpoint: checkpoint.seq, reverse=True)

    async def add(self, checkpoint: Checkpoint) -> None:
        if self._tx.get(CHECKPOINTS, checkpoint.id) is not None:
            raise IntegrityViolation(f"checkpoint {checkpoint.id} exists")
        if self._tx.get(SESSIONS, checkpoint.session_id) is None:
            raise IntegrityViolation(f"checkpoint of unknown session {checkpoint.session_id}")
        if any(other.seq == checkpoint.seq for other in self._of(checkpoint.session_id)):
            raise IntegrityViolation(f"checkpoint {checkpoint.seq} of the session exists")
        self._tx.put(CHECKPOINTS, checkpoint.id, _copied(checkpoint))

    async def prune(self, session_id: UUID, keep_from_seq: int) -> int:
        old = [checkpoint for checkpoint in self._of(session_id) if checkpoint.seq < keep_from_seq]
        for checkpoint in old:
            self._tx.delete(CHECKPOINTS, checkpoint.id)
        return len(old)

    async def get(self, checkpoint_id: UUID) -> Checkpoint | None:
        found: Checkpoint | None = self._tx.get(CHECKPOINTS, checkpoint_id)
        return _copied(found) if found else None

    async def latest(self, session_id: UUID) -> Checkpoint | None:
        newest = self._of(session_id)[:1]
        return _copied(newest[0]) if newest else None

    async def add_numbered(
        self,
        session_id: UUID,
        drafts: Sequence[Checkpoint],
        finishing: Sequence[Effect],
        *,
        unless_in: Sequence[SessionState] = (),
    ) -> tuple[list[Checkpoint], int] | None:
        first = await MemorySessionRepository(self._tx).next_checkpoint_seq(
            session_id, unless_in=unless_in, count=len(drafts)
        )
        if first is None:
            return None
        stored = [replace(draft, seq=first + n) for n, draft in enumerate(drafts)]
        for checkpoint in stored:
            await self.add(checkpoint)
        ledger = MemoryEffectRepository(self._tx)
        return stored, sum([await ledger.finish(effect) for effect in finishing])

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
        check_added_after(numbered, after_seq, keep_from)
        try:
            added = await self.add_numbered(session_id, numbered, [], unless_in=unless_in)
        except LookupError:
            return None
        if added is None or [c.seq for c in added[0]] != [c.seq for c in numbered]:
            return False  # the caller leaves without a commit: nothing stays
        await self.prune(session_id, keep_from)
        await self._events.append(new)
        return True

    async def latest_with_session(
        self, session_id: UUID
    ) -> tuple[Session | None, Checkpoint | None]:
        session = await MemorySessionRepository(self._tx).get(session_id)
        return session, (await self.latest(session_id) if session is not None else None)

    async def latest_with_plan(
        self, session_id: UUID
    ) -> tuple[Session | None, Checkpoint | None, list[Task]]:
        session, latest = await self.latest_with_session(session_id)
        tasks = await MemoryTaskRepository(self._tx).of_session(session_id) if session else []
        return session, latest, tasks

    async def list(self, session_id: UUID, offset: int, limit: int) -> tuple[list[Checkpoint], int]:
        found = self._of(session_id)
        return [_copied(checkpoint) for checkpoint in found[offset : offset + limit]], len(found)


def _copied(checkpoint: Checkpoint) -> Checkpoint:
    return Checkpoint(
        id=checkpoint.id,
        session_id=checkpoint.session_id,
        seq=checkpoint.seq,
        label=checkpoint.label,
        reason=checkpoint.reason,
        created_at=checkpoint.created_at,
        data=json_copy(checkpoint.data),
    )
