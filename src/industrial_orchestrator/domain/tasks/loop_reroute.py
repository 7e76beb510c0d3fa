"""Who may take a task again after the loop guard stopped an agent on it.

An agent the guard stopped on a task does not get that task again while another capable
agent (live, holding the task's capabilities, allowed by its session) has not been
stopped on it: the task waits for that one. Once the guard has stopped every capable
agent, nobody is barred any more and the task goes to whoever asks, so it never waits
forever for an agent that is not coming; ``TASK_MAX_ATTEMPTS`` bounds how often that can
happen before the task fails for good.
"""

from __future__ import annotations

from collections.abc import Collection
from uuid import UUID


def barred_agents(stopped: Collection[UUID], capable: Collection[UUID]) -> frozenset[UUID]:
    """The agents that may not take the task now: those the guard ``stopped`` on it, as
    long as one of the ``capable`` agents was not stopped on it."""
    if not stopped or not set(capable) - set(stopped):
        return frozenset()
    return frozenset(stopped)
