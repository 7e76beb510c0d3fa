"""Which commits may have work for an agent waiting on ``tasks/next``.

A waiting agent asks again when it is woken. Waking every waiting agent on every commit
(a log line, a checkpoint, another agent's lease) made each finished task cost a claim
per waiting agent per commit: a quarter of the server's time with 8 agents. A commit is
news for them only when it can make a task claimable by someone who could not claim it
before; the rest can only take work away. A waiting agent also asks again on a timer,
which covers what only time changes (a task learned routing left to a rival for a while).
"""

from __future__ import annotations

from collections.abc import Iterable

from .events import EventType, NewEvent
from .tasks.task import TaskStatus

_ALWAYS = frozenset(
    {
        # A task outside any session may be stored READY at once.
        EventType.TASK_CREATED,
        # A session started, resumed or ended: its READY tasks are offered, or not.
        EventType.SESSION_TRANSITION,
        # A rival's status or tier decides what learned routing leaves to it.
        EventType.AGENT_REGISTERED,
        EventType.AGENT_DEREGISTERED,
        EventType.AGENT_STATUS_CHANGED,
        EventType.AGENT_TIER_CHANGED,
    }
)


def offers_work(events: Iterable[NewEvent]) -> bool:
    """Whether a commit of ``events`` may have made a task claimable: one became READY,
    or a RUNNING one ended (the files it held free again for a task of its session), or
    a session or an agent changed (``_ALWAYS``)."""
    for event in events:
        if event.type in _ALWAYS:
            return True
        if event.type == EventType.TASK_TRANSITION and (
            event.payload.get("to") == TaskStatus.READY.value
            or event.payload.get("from") == TaskStatus.RUNNING.value
        ):
            return True
    return False
