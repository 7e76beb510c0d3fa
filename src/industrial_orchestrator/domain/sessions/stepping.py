"""When the engine must look at a session: work-driven stepping's rules.

A session is stepped when something happened to it, read from the event log, or when one
of its timers is due; a session nobody touches costs nothing between its timers. These
are the rules for the first: which events of a session call for a step, and which events
of the fleet call for a look at the sessions that wait on agents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from ..agents.agent import AgentStatus
from ..agents.tiers import Tier
from ..events import EventType, NewEvent

SESSION_EVENTS = frozenset(
    {
        # An operator acted, the engine or a verification moved it, a plan came back.
        EventType.SESSION_TRANSITION,
        EventType.SESSION_PHASE,
        # Its tasks changed: a result, a lease, a lease taken back, a plan stored.
        EventType.TASK_CREATED,
        EventType.TASK_TRANSITION,
        EventType.TASK_DECOMPOSED,
        EventType.TASK_DEPENDENCY_ADDED,
        EventType.TASK_ATTEMPT_ENDED,
        EventType.TASK_LOOP_STOPPED,
        # An attempt is held up (its provider retried) or free again: DEGRADED or not.
        EventType.TASK_HELD_UP,
    }
)
"""Events of a session after which it is stepped. Not its log lines, telemetry or
checkpoints: they change nothing the engine decides on."""

FLEET_EVENTS = frozenset(
    {
        EventType.AGENT_REGISTERED,
        EventType.AGENT_DEREGISTERED,
        EventType.AGENT_STATUS_CHANGED,
        EventType.AGENT_TIER_CHANGED,
    }
)
"""Events after which the sessions whose health depends on who is online are looked at:
a DEGRADED session may have a capable agent again, a RUNNING one with work waiting may
have lost its last one."""

WATCHED = frozenset(SESSION_EVENTS | FLEET_EVENTS)


ROUTINE_MOVES = frozenset({"COMPLETED", "READY"})
"""What a task's transition goes to when a result leaves its plan going: the task done,
or a task it held back made READY (or, after a failed attempt, itself READY again)."""


@dataclass(frozen=True, slots=True)
class Touched:
    """What a stretch of the event log calls for."""

    sessions: frozenset[UUID]
    fleet_changed: bool
    routine: frozenset[UUID] = frozenset()
    """Of ``sessions``, those touched by nothing but results (``is_routine``): a step
    of such a session may wait a little and take several in (while its plan has tasks
    open: the runner asks)."""


LEASED = "RUNNING"
"""A task's move to RUNNING is an agent taking it: nothing the engine decides on changes
(the agent's result, or its lease running out, will be another event)."""


def calls_for_a_step(kind: EventType, to: str | None) -> bool:
    return kind in SESSION_EVENTS and not (kind == EventType.TASK_TRANSITION and to == LEASED)


def is_routine(kind: EventType, to: str | None) -> bool:
    """An event of a result that leaves the plan going: an attempt ended, a task done or
    made READY. Not a task that failed for good, an operator's action, a plan stored, a
    loop stopped or an attempt held up: those are stepped at once."""
    return kind == EventType.TASK_ATTEMPT_ENDED or (
        kind == EventType.TASK_TRANSITION and to in ROUTINE_MOVES
    )


def changes_the_fleet(kind: EventType, to: str | None, came_from: str | None) -> bool:
    """Whether an agent's event changes what a session's health depends on (its READY
    tasks' capable agents online, and not all of them DEGRADED-tier): an agent joined or
    left, went offline or came back, went into the DEGRADED tier or out of it. Not one
    between busy, healthy and degraded (online all the same), nor one moving between two
    other tiers (most tier changes: an
    agent's record grows as it works, and every session with work waiting would be looked
    at again for each). An event that does not say where it came from counts."""
    if kind == EventType.AGENT_STATUS_CHANGED:
        return came_from is None or _OFFLINE in (to, came_from)
    if kind == EventType.AGENT_TIER_CHANGED:
        return came_from is None or _DEGRADED in (to, came_from)
    return kind in FLEET_EVENTS


_OFFLINE = AgentStatus.OFFLINE.value
_DEGRADED = Tier.DEGRADED.value


def touched_by(
    events: Iterable[tuple[UUID | None, EventType, str | None, str | None]],
) -> Touched:
    """From (session, type, the state a transition went to, the one it came from) of the
    log: the sessions to step, and whether the fleet changed."""
    sessions: set[UUID] = set()
    urgent: set[UUID] = set()
    fleet_changed = False
    for session_id, kind, to, came_from in events:
        if kind in FLEET_EVENTS:
            fleet_changed = fleet_changed or changes_the_fleet(kind, to, came_from)
        elif session_id is not None and calls_for_a_step(kind, to):
            sessions.add(session_id)
            if not is_routine(kind, to):
                urgent.add(session_id)
    return Touched(frozenset(sessions), fleet_changed, frozenset(sessions - urgent))


def steps_called_by(events: Iterable[NewEvent]) -> frozenset[UUID] | None:
    """The sessions a commit of ``events`` calls to step, as a look at the log would find
    them (``touched_by``): a wake-up names them, so that a runner holding none of them
    need not look (a lease, a checkpoint, a log line call for no step at all). None when
    the commit changed the fleet: the sessions that wait on agents are found by a look."""
    touched = touched_by(
        (event.session_id, event.type, _state(event, "to"), _state(event, "from"))
        for event in events
    )
    return None if touched.fleet_changed else touched.sessions


def _state(event: NewEvent, key: str) -> str | None:
    # As the log's reader gets it (``payload ->> key``); a state that is not text is
    # read as none, which calls for a step (and counts as a fleet change) when in doubt.
    value = event.payload.get(key)
    return value if isinstance(value, str) else None
