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

    async def remove(self, agent_id: UUID) -> bool: ...

    async def count_active(self) -> int:
        """Agents not OFFLINE."""
