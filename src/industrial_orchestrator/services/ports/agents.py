"""The agents' registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from ...domain.agents.agent import Agent


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

    async def save_at_commit(self, before: Agent, after: Agent, *, stale: Exception) -> None:
        """``save``, raising ``stale`` (from the commit, or at once) when the row is no longer at
        ``before.version``. Kept for the commit where that saves a round trip (PostgreSQL: the
        writes join the commit's last statement; elsewhere the write runs at once): the
        transaction's reads do not see it, so it is a row's last write in the transaction."""

    async def remove(self, agent_id: UUID) -> bool: ...

    async def count_active(self) -> int:
        """Agents not OFFLINE."""
