"""When an agent counts as gone: it missed ``MISSED_BEATS`` heartbeats in a row.

The orchestrator's own start counts as a sighting of every agent: while it was down,
nobody could beat, so after a restart each agent gets the full allowance again instead
of being reaped for the orchestrator's absence.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .agent import Agent, AgentStatus

MISSED_BEATS = 3


def last_seen(agent: Agent, *, started_at: datetime) -> datetime:
    return max(agent.last_heartbeat or agent.registered_at, started_at)


def is_overdue(
    agent: Agent, *, now: datetime, heartbeat_seconds: float, started_at: datetime
) -> bool:
    """Whether ``agent`` (not already OFFLINE) has been silent for more than
    ``MISSED_BEATS`` heartbeat intervals. Exactly ``MISSED_BEATS`` intervals is not yet
    overdue."""
    if agent.status == AgentStatus.OFFLINE:
        return False
    allowance = timedelta(seconds=heartbeat_seconds * MISSED_BEATS)
    return now - last_seen(agent, started_at=started_at) > allowance
