"""The agent registry, stored with guarded (versioned) updates."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.agents.agent import Agent, AgentStatus, agent_fields, agent_from_fields
from ..domain.agents.routing import ROUTABLE_STATUSES
from ..services.ports import DuplicateKeyError
from .commit_writes import CommitWrites
from .direct_execution import Row, fetch_all, fetch_first, run
from .json_sets import superset_of
from .rows import changed_columns
from .tables import agents

# Built once (read on every agent request): a built statement keeps its cache key.
_BY_ID = sa.select(agents).where(agents.c.id == sa.bindparam("agent_id"))
_INSERT = sa.insert(agents)
# The SET clause is the execution's own columns (besides the w_ guards).
_GUARDED_UPDATE = sa.update(agents).where(
    agents.c.id == sa.bindparam("w_id"), agents.c.version == sa.bindparam("w_version")
)


@functools.lru_cache(maxsize=256)
def _holders(capabilities: tuple[str, ...], dialect: str) -> Any:
    """``holders``' statement, built once per set of capabilities (asked on every step of
    a session, for the capabilities of its tasks)."""
    return (
        sa.select(agents)
        .where(
            agents.c.status != AgentStatus.OFFLINE.value,
            superset_of(agents.c.capabilities, capabilities, dialect),
        )
        .order_by(agents.c.name)
    )


class SqlAgentRepository:
    def __init__(self, connection: AsyncConnection, writes: CommitWrites | None = None) -> None:
        self._db = connection
        self._writes = writes

    async def add(self, agent: Agent) -> None:
        try:
            await run(self._db, _INSERT, _values(agent))
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    async def get(self, agent_id: UUID) -> Agent | None:
        row = await fetch_first(self._db, _BY_ID, {"agent_id": agent_id})
        return _agent(row) if row else None

    async def all(self) -> list[Agent]:
        result = await self._db.execute(sa.select(agents).order_by(agents.c.name))
        return [_agent(row) for row in result.mappings()]

    async def candidates(self, capabilities: Sequence[str]) -> list[Agent]:
        """Agents that pass routing's hard filters: every capability held, HEALTHY or
        DEGRADED, below capacity."""
        result = await self._db.execute(
            sa.select(agents)
            .where(
                agents.c.status.in_([s.value for s in ROUTABLE_STATUSES]),
                agents.c.tasks_in_progress < agents.c.max_concurrent_tasks,
                superset_of(agents.c.capabilities, capabilities, self._db.dialect.name),
            )
            .order_by(agents.c.name)
        )
        return [_agent(row) for row in result.mappings()]

    async def holders(self, capabilities: Sequence[str]) -> list[Agent]:
        """Agents not OFFLINE holding every capability (busy or full included)."""
        query = _holders(tuple(capabilities), self._db.dialect.name)
        return [_agent(row) for row in await fetch_all(self._db, query)]

    async def save(self, before: Agent, after: Agent) -> bool:
        return await run(self._db, _GUARDED_UPDATE, _guarded(before, after)) == 1

    async def save_at_commit(self, before: Agent, after: Agent, *, stale: Exception) -> None:
        """``save`` at the commit (``CommitWrites``): the commit raises ``stale`` if the
        row is not at ``before``'s version by then."""
        assert self._writes is not None, "a unit of work's repository keeps writes"
        params = _guarded(before, after)
        await self._writes.add(("agents", before.id), _GUARDED_UPDATE, params, stale=stale)

    async def remove(self, agent_id: UUID) -> bool:
        result = await self._db.execute(sa.delete(agents).where(agents.c.id == agent_id))
        return result.rowcount == 1

    async def count_active(self) -> int:
        count = await self._db.scalar(
            sa.select(sa.func.count())
            .select_from(agents)
            .where(agents.c.status != AgentStatus.OFFLINE.value)
        )
        return int(count or 0)


def _values(agent: Agent) -> dict[str, Any]:
    # The columns are the record's fields.
    return agent_fields(agent)


def _agent(row: Row) -> Agent:
    return agent_from_fields(row)


def _guarded(before: Agent, after: Agent) -> dict[str, Any]:
    """``_GUARDED_UPDATE``'s parameters: the columns that change, and the version it was."""
    changed = changed_columns(_values(before), _values(after), version=before.version)
    return {**changed, "w_id": before.id, "w_version": before.version}
