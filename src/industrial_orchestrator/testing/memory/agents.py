"""The agent registry (``storage/agent_repository.py`` in memory). Names sort by code
point, as text does under the C collation and in SQLite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from ...domain.agents.agent import Agent, AgentStatus
from ...domain.agents.routing import ROUTABLE_STATUSES
from ...services.ports import DuplicateKeyError
from .store import IntegrityViolation, Transaction, json_copy

AGENTS = "agents"


def copied_agent(agent: Agent) -> Agent:
    """A copy no caller's change reaches the stored record through."""
    return agent.evolve(capabilities=tuple(agent.capabilities), metadata=json_copy(agent.metadata))


class MemoryAgentRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def _by_name(self, where: Callable[[Agent], bool]) -> list[Agent]:
        found: list[Agent] = self._tx.select(AGENTS, where)
        return [copied_agent(agent) for agent in sorted(found, key=lambda agent: agent.name)]

    def _name_taken(self, agent: Agent) -> bool:
        return any(
            other.name == agent.name and other.id != agent.id for other in self._tx.rows(AGENTS)
        )

    async def add(self, agent: Agent) -> None:
        if self._tx.get(AGENTS, agent.id) is not None or self._name_taken(agent):
            raise DuplicateKeyError(f"agent {agent.id} or name {agent.name!r} exists")
        self._tx.put(AGENTS, agent.id, copied_agent(agent))

    async def get(self, agent_id: UUID) -> Agent | None:
        found: Agent | None = self._tx.get(AGENTS, agent_id)
        return copied_agent(found) if found else None

    async def all(self) -> list[Agent]:
        return self._by_name(lambda _agent: True)

    async def candidates(self, capabilities: Sequence[str]) -> list[Agent]:
        wanted = set(capabilities)
        return self._by_name(
            lambda agent: (
                agent.status in ROUTABLE_STATUSES
                and agent.tasks_in_progress < agent.max_concurrent_tasks
                and wanted <= set(agent.capabilities)
            )
        )

    async def holders(self, capabilities: Sequence[str]) -> list[Agent]:
        wanted = set(capabilities)
        return self._by_name(
            lambda agent: (
                agent.status is not AgentStatus.OFFLINE and wanted <= set(agent.capabilities)
            )
        )

    async def save_at_commit(self, before: Agent, after: Agent, *, stale: Exception) -> None:
        # In process a write costs no round trip: it runs at once.
        if not await self.save(before, after):
            raise stale

    async def save(self, before: Agent, after: Agent) -> bool:
        current: Agent | None = self._tx.get(AGENTS, before.id)
        if current is None or current.version != before.version:
            return False
        # Every column is written (the SQL UPDATE's values are the whole of ``after``);
        # a name another agent holds is refused by the unique index there, untranslated.
        if self._name_taken(after):
            raise IntegrityViolation(f"agent name {after.name!r} is taken")
        if after.id != before.id:
            self._tx.delete(AGENTS, before.id)
        self._tx.put(AGENTS, after.id, copied_agent(after))
        return True

    async def remove(self, agent_id: UUID) -> bool:
        return self._tx.delete(AGENTS, agent_id)

    async def count_active(self) -> int:
        return sum(1 for agent in self._tx.rows(AGENTS) if agent.status is not AgentStatus.OFFLINE)
