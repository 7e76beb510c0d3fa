"""An agent with every field set, for the tests of its mappings."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, AgentStatus

from .record_builders import no_field_at_default


def every_field_set() -> Agent:
    """An agent with no field at its default."""
    values = {
        "id": uuid4(),
        "name": "ada",
        "agent_type": "coder",
        "capabilities": ("python", "review"),
        "kind": AgentKind.EXTERNAL,
        "status": AgentStatus.DEGRADED,
        "max_concurrent_tasks": 3,
        "registered_at": datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC),
        "last_heartbeat": datetime(2026, 12, 6, 4, 5, 6, tzinfo=UTC),
        "tasks_in_progress": 2,
        "current_load": 0.5,
        "success_count": 7,
        "failure_count": 1,
        "last_assigned_at": datetime(2026, 12, 6, 4, 0, tzinfo=UTC),
        "metadata": {"team": "blue", "limits": [1, 2]},
        "version": 9,
    }
    return no_field_at_default(Agent, values)
