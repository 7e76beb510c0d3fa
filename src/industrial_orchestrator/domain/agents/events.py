"""The events of the agent registry (``agent.*``), in the global stream."""

from __future__ import annotations

from datetime import datetime

from ..events import EventType, NewEvent
from .agent import Agent, AgentStatus
from .tiers import Tier


def agent_registered(agent: Agent) -> NewEvent:
    return NewEvent(
        EventType.AGENT_REGISTERED,
        agent.registered_at,
        None,
        {
            "agent_id": str(agent.id),
            "name": agent.name,
            "agent_type": agent.agent_type,
            "kind": agent.kind.value,
            "capabilities": list(agent.capabilities),
        },
    )


def agent_deregistered(agent: Agent, at: datetime) -> NewEvent:
    return NewEvent(
        EventType.AGENT_DEREGISTERED, at, None, {"agent_id": str(agent.id), "name": agent.name}
    )


def agent_status_changed(agent: Agent, before: AgentStatus, at: datetime) -> NewEvent:
    return NewEvent(
        EventType.AGENT_STATUS_CHANGED,
        at,
        None,
        {"agent_id": str(agent.id), "from": before.value, "to": agent.status.value},
    )


def agent_tier_changed(agent: Agent, before: Tier, at: datetime) -> NewEvent:
    return NewEvent(
        EventType.AGENT_TIER_CHANGED,
        at,
        None,
        {
            "agent_id": str(agent.id),
            "from": before.value,
            "to": agent.tier.value,
            "success_count": agent.success_count,
            "failure_count": agent.failure_count,
        },
    )
