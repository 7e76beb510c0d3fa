"""Checkpoints (``storage/checkpoint_repository.py`` in memory)."""

from __future__ import annotations

from uuid import UUID

from ...domain.sessions.checkpoint import Checkpoint
from .sessions import SESSIONS
from .store import IntegrityViolation, Transaction, json_copy

CHECKPOINTS = "checkpoints"


class MemoryCheckpointRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

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
