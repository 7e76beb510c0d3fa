"""The agent: one member of the workforce, internal (driven through OpenCode) or external
(speaking the External Agent Protocol), with what it can do and how well it has done it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from ..errors import InvalidInput
from ..plain_values import identifier, moment, required_moment
from ..tasks.task import normalise_capabilities
from .tiers import Tier, tier_for


class AgentKind(StrEnum):
    INTERNAL = "internal"
    EXTERNAL = "external"


class AgentStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    BUSY = "busy"
    OFFLINE = "offline"


# The agent types of the user guide; others are accepted as given (lower-case).
KNOWN_AGENT_TYPES = (
    "architect",
    "implementer",
    "reviewer",
    "security_auditor",
    "tester",
    "debugger",
    "optimizer",
    "documenter",
)


@dataclass(frozen=True, slots=True)
class Agent:
    id: UUID
    name: str
    agent_type: str
    capabilities: tuple[str, ...]
    kind: AgentKind
    status: AgentStatus
    max_concurrent_tasks: int
    registered_at: datetime
    last_heartbeat: datetime | None = None
    tasks_in_progress: int = 0
    current_load: float = 0.0
    success_count: int = 0
    failure_count: int = 0
    last_assigned_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    @property
    def finished(self) -> int:
        return self.success_count + self.failure_count

    @property
    def success_rate(self) -> float | None:
        """Successes over finished tasks; None before the first one."""
        return self.success_count / self.finished if self.finished else None

    @property
    def tier(self) -> Tier:
        return tier_for(self.success_count, self.failure_count)

    @property
    def at_capacity(self) -> bool:
        return self.tasks_in_progress >= self.max_concurrent_tasks

    def evolve(self, **changes: Any) -> Agent:
        return dataclasses.replace(self, **changes)


def agent_fields(agent: Agent) -> dict[str, Any]:
    """The agent as plain values, one per field and named after it (enums as their
    values, the capabilities as a list, ids and times as they are): the one mapping the
    database rows, the replicas' snapshot and the API's schema are made from, so a field
    added to ``Agent`` reaches all of them."""
    return {
        "id": agent.id,
        "name": agent.name,
        "agent_type": agent.agent_type,
        "capabilities": list(agent.capabilities),
        "kind": agent.kind.value,
        "status": agent.status.value,
        "max_concurrent_tasks": agent.max_concurrent_tasks,
        "registered_at": agent.registered_at,
        "last_heartbeat": agent.last_heartbeat,
        "tasks_in_progress": agent.tasks_in_progress,
        "current_load": agent.current_load,
        "success_count": agent.success_count,
        "failure_count": agent.failure_count,
        "last_assigned_at": agent.last_assigned_at,
        "metadata": agent.metadata,
        "version": agent.version,
    }


def agent_from_fields(fields: Mapping[str, Any]) -> Agent:
    """``agent_fields`` read back, from a row or from JSON: ids and times may come as
    text, and a time without a zone is UTC (SQLite gives them back so)."""
    return Agent(
        id=identifier(fields["id"]),
        name=fields["name"],
        agent_type=fields["agent_type"],
        capabilities=tuple(fields["capabilities"]),
        kind=AgentKind(fields["kind"]),
        status=AgentStatus(fields["status"]),
        max_concurrent_tasks=int(fields["max_concurrent_tasks"]),
        registered_at=required_moment(fields["registered_at"]),
        last_heartbeat=moment(fields["last_heartbeat"]),
        tasks_in_progress=int(fields["tasks_in_progress"]),
        current_load=float(fields["current_load"]),
        success_count=int(fields["success_count"]),
        failure_count=int(fields["failure_count"]),
        last_assigned_at=moment(fields["last_assigned_at"]),
        metadata=dict(fields["metadata"] or {}),
        version=int(fields["version"]),
    )


def new_agent(
    *,
    id: UUID,
    name: str,
    agent_type: str,
    capabilities: list[str] | tuple[str, ...],
    kind: AgentKind,
    max_concurrent_tasks: int,
    now: datetime,
    metadata: dict[str, Any] | None = None,
) -> Agent:
    """A registered, HEALTHY agent with no record yet. Raises ``InvalidInput`` for a blank
    name or type, no capability, or a capacity below 1."""
    name = name.strip()
    if not name:
        raise InvalidInput("an agent needs a name", {"field": "name"})
    kind_of_work = agent_type.strip().lower()
    if not kind_of_work:
        raise InvalidInput("an agent needs an agent_type", {"field": "agent_type"})
    normalised = normalise_capabilities(capabilities)
    if not normalised:
        raise InvalidInput("an agent needs at least one capability", {"field": "capabilities"})
    if max_concurrent_tasks < 1:
        raise InvalidInput(
            "max_concurrent_tasks must be at least 1",
            {"field": "max_concurrent_tasks", "value": max_concurrent_tasks},
        )
    return Agent(
        id=id,
        name=name,
        agent_type=kind_of_work,
        capabilities=normalised,
        kind=kind,
        status=AgentStatus.HEALTHY,
        max_concurrent_tasks=max_concurrent_tasks,
        registered_at=now,
        last_heartbeat=now,
        metadata=dict(metadata or {}),
    )


@dataclass(frozen=True, slots=True)
class NewAgent:
    """An agent to register: what its registration says of it."""

    name: str
    agent_type: str
    capabilities: Sequence[str]
    kind: AgentKind = AgentKind.INTERNAL
    max_concurrent_tasks: int = 1
    metadata: dict[str, Any] | None = None
