"""The side-effect ledger (``storage/effect_repository.py`` in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from uuid import UUID

from ...domain.effects import Effect, EffectKind, EffectState
from .sessions import SESSIONS
from .store import IntegrityViolation, Transaction, json_copy

EFFECTS = "effects"


def _copied(effect: Effect) -> Effect:
    return replace(effect, detail=json_copy(effect.detail))


def _oldest_first(effect: Effect) -> tuple[bool, datetime | None, str]:
    # A ledger entry without a creation time sorts first, as NULL does in SQLite
    # (PostgreSQL puts it last; the services always give one).
    return effect.created_at is not None, effect.created_at, effect.key


class MemoryEffectRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def record(self, effect: Effect) -> tuple[Effect, bool]:
        stored: Effect | None = self._tx.get(EFFECTS, effect.key)
        if stored is not None:
            return _copied(stored), False
        if effect.session_id is not None and self._tx.get(SESSIONS, effect.session_id) is None:
            raise IntegrityViolation(f"effect of unknown session {effect.session_id}")
        self._tx.put(EFFECTS, effect.key, _copied(effect))
        return effect, True

    async def record_all(
        self, effects: Sequence[Effect], *, unless_writes_pending: UUID | None = None
    ) -> list[tuple[Effect, bool]] | None:
        if unless_writes_pending is not None and await self.sessions_with_pending_writes(
            [unless_writes_pending]
        ):
            return None
        return [await self.record(effect) for effect in effects]

    async def get(self, key: str) -> Effect | None:
        found: Effect | None = self._tx.get(EFFECTS, key)
        return _copied(found) if found else None

    async def finish(self, effect: Effect) -> bool:
        current: Effect | None = self._tx.get(EFFECTS, effect.key)
        if current is None or current.state is not EffectState.PENDING:
            return False
        done = replace(
            current, state=EffectState.DONE, detail=json_copy(effect.detail), done_at=effect.done_at
        )
        self._tx.put(EFFECTS, effect.key, done)
        return True

    async def pending(
        self, *, created_before: datetime | None = None, session_id: UUID | None = None
    ) -> list[Effect]:
        found: list[Effect] = self._tx.select(
            EFFECTS,
            lambda effect: (
                effect.state is EffectState.PENDING
                and (
                    created_before is None
                    or (effect.created_at is not None and effect.created_at <= created_before)
                )
                and (session_id is None or effect.session_id == session_id)
            ),
        )
        return [_copied(effect) for effect in sorted(found, key=_oldest_first)]

    async def sessions_with_pending_writes(self, session_ids: Sequence[UUID]) -> set[UUID]:
        wanted = set(session_ids)
        return {
            effect.session_id
            for effect in self._tx.rows(EFFECTS)
            if effect.state is EffectState.PENDING
            and effect.kind is EffectKind.WORKSPACE_WRITE
            and effect.session_id in wanted
        }

    async def of_session(
        self, session_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Effect], int]:
        found: list[Effect] = self._tx.select(EFFECTS, lambda e: e.session_id == session_id)
        found.sort(key=_oldest_first)
        return [_copied(effect) for effect in found[offset : offset + limit]], len(found)
