"""A running session's health: RUNNING while its work can be done, DEGRADED while some of
it waits on agents the fleet does not have (or only has at the DEGRADED tier), or a task
in flight is held up (its provider being retried).

DEGRADED tells the operator that waiting is not progress; the session goes back to RUNNING
by itself once every READY task has a capable agent and nothing is held up.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..agents.agent import Agent
from ..agents.tiers import Tier
from ..tasks.task import Task
from .states import SessionState

BACK_TO_RUNNING = "every waiting task has a capable agent again"


def unserved(task: Task, holders: Sequence[Agent], limited_to: Sequence[str]) -> str | None:
    """Why nobody fit can do the READY ``task``, or None when somebody can. ``holders``
    are the agents online holding every capability it needs; ``limited_to`` names the
    agents the session may use (empty: any)."""
    needs = ", ".join(task.required_capabilities)
    if limited_to and holders and not any(a.name in limited_to for a in holders):
        return (
            f"none of the agents this session is limited to ({', '.join(limited_to)}) "
            f"is online with what '{task.title}' needs ({needs})"
        )
    if not holders:
        return f"no agent can do '{task.title}' (needs {needs})"
    if all(agent.tier == Tier.DEGRADED for agent in holders):
        return f"only DEGRADED-tier agents can do '{task.title}' (needs {needs})"
    return None


def health_move(status: SessionState, trouble: str | None) -> tuple[SessionState, str] | None:
    """Where a session in ``status`` moves, and why, given what troubles its work now
    (None: nothing); None when it stays."""
    if trouble and status == SessionState.RUNNING:
        return SessionState.DEGRADED, trouble
    if not trouble and status == SessionState.DEGRADED:
        return SessionState.RUNNING, BACK_TO_RUNNING
    return None
