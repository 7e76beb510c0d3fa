"""The side-effect ledger's rows (``domain.effects``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from ...domain.effects import Effect


class EffectRepository(Protocol):
    async def record(self, effect: Effect) -> tuple[Effect, bool]:
        """Insert ``effect`` unless its key is taken; the entry stored under the key, and
        whether it is the one just inserted."""

    async def record_all(
        self, effects: Sequence[Effect], *, unless_writes_pending: UUID | None = None
    ) -> list[tuple[Effect, bool]] | None:
        """``record`` for each, in order, as one statement where the database allows:
        all inserted or none, so it needs no transaction around it. With
        ``unless_writes_pending``: nothing recorded, and None, while that session has files
        still to be written into its workspace (asked in the same statement)."""

    async def get(self, key: str) -> Effect | None: ...

    async def finish(self, effect: Effect) -> bool:
        """Mark a PENDING entry DONE; False when it was not PENDING any more."""

    async def pending(
        self, *, created_before: datetime | None = None, session_id: UUID | None = None
    ) -> list[Effect]:
        """PENDING entries (made before ``created_before``; of ``session_id``), oldest
        first."""

    async def sessions_with_pending_writes(self, session_ids: Sequence[UUID]) -> set[UUID]:
        """Which of the sessions have files still to be written into their workspace."""

    async def of_session(
        self, session_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Effect], int]:
        """Oldest first, with the total count."""
