"""The routable agent set as bytes, for a cache shared by replicas (``SnapshotCache``).

Routing reads every agent; with thousands registered, that read is the cost of a routing
decision. A snapshot of the routable agents (HEALTHY or DEGRADED, with room for work) is
cached for a moment. It may be that moment stale, which is harmless: routing reserves
nothing, and a lease is always taken against the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from ..domain.agent_routing import ROUTABLE_STATUSES
from ..domain.agents import Agent, AgentKind, AgentStatus

ROUTABLE_KEY = "agents:routable"


def routable(agents: Sequence[Agent]) -> list[Agent]:
    return [a for a in agents if a.status in ROUTABLE_STATUSES and not a.at_capacity]


def encode(agents: Sequence[Agent]) -> bytes:
    return json.dumps([_plain(agent) for agent in agents], separators=(",", ":")).encode()


def decode(raw: bytes) -> list[Agent]:
    return [_agent(item) for item in json.loads(raw)]


def _plain(agent: Agent) -> dict[str, Any]:
    return {
        "id": str(agent.id),
        "name": agent.name,
        "agent_type": agent.agent_type,
        "capabilities": list(agent.capabilities),
        "kind": agent.kind.value,
        "status": agent.status.value,
        "max_concurrent_tasks": agent.max_concurrent_tasks,
        "registered_at": agent.registered_at.isoformat(),
        "last_heartbeat": _iso(agent.last_heartbeat),
        "tasks_in_progress": agent.tasks_in_progress,
        "current_load": agent.current_load,
        "success_count": agent.success_count,
        "failure_count": agent.failure_count,
        "last_assigned_at": _iso(agent.last_assigned_at),
        "metadata": agent.metadata,
        "version": agent.version,
    }


def _agent(item: dict[str, Any]) -> Agent:
    return Agent(
        id=UUID(item["id"]),
        name=item["name"],
        agent_type=item["agent_type"],
        capabilities=tuple(item["capabilities"]),
        kind=AgentKind(item["kind"]),
        status=AgentStatus(item["status"]),
        max_concurrent_tasks=int(item["max_concurrent_tasks"]),
        registered_at=datetime.fromisoformat(item["registered_at"]),
        last_heartbeat=_time(item["last_heartbeat"]),
        tasks_in_progress=int(item["tasks_in_progress"]),
        current_load=float(item["current_load"]),
        success_count=int(item["success_count"]),
        failure_count=int(item["failure_count"]),
        last_assigned_at=_time(item["last_assigned_at"]),
        metadata=dict(item["metadata"]),
        version=int(item["version"]),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None
