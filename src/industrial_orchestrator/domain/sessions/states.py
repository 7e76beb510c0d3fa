"""The 12-state session lifecycle: the state reference table and the transition table.

Both tables are data (user guide §5, with the settled decisions of ARCHITECTURE.md §4);
``can_transition`` is the one function that reads them.

Where the guide's copy lost an emoji to encoding (PENDING, RUNNING, PAUSED,
PARTIALLY_COMPLETED, FAILED, TIMEOUT), the conventional symbol for the state is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SessionState(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    PARTIALLY_COMPLETED = "PARTIALLY_COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    STOPPED = "STOPPED"
    CANCELLED = "CANCELLED"
    ORPHANED = "ORPHANED"
    DEGRADED = "DEGRADED"


class StateCategory(StrEnum):
    INITIAL = "INITIAL"
    ACTIVE = "ACTIVE"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    SYSTEM = "SYSTEM"


@dataclass(frozen=True, slots=True)
class StateInfo:
    state: SessionState
    emoji: str
    color: str
    terminal: bool
    category: StateCategory
    description: str


S = SessionState
C = StateCategory

STATE_TABLE: dict[SessionState, StateInfo] = {
    info.state: info
    for info in (
        StateInfo(S.PENDING, "⏳", "#6B7280", False, C.INITIAL, "Created, awaiting execution"),
        StateInfo(S.QUEUED, "📋", "#3B82F6", False, C.ACTIVE, "In execution queue"),
        StateInfo(S.RUNNING, "⚙️", "#10B981", False, C.ACTIVE, "Actively executing"),
        StateInfo(S.PAUSED, "⏸️", "#F59E0B", False, C.ACTIVE, "Manually paused"),
        StateInfo(S.COMPLETED, "✅", "#059669", True, C.SUCCESS, "Successfully finished"),
        StateInfo(
            S.PARTIALLY_COMPLETED, "⚠️", "#D97706", True, C.SUCCESS, "Some sub-tasks succeeded"
        ),
        StateInfo(S.FAILED, "❌", "#DC2626", True, C.FAILURE, "Execution failed"),
        StateInfo(S.TIMEOUT, "⏰", "#7C3AED", True, C.FAILURE, "Exceeded max duration"),
        StateInfo(S.STOPPED, "🛑", "#4B5563", True, C.FAILURE, "Manually stopped"),
        StateInfo(
            S.CANCELLED, "🚫", "#374151", True, C.FAILURE, "Cancelled before/during execution"
        ),
        StateInfo(S.ORPHANED, "🧩", "#9333EA", True, C.SYSTEM, "Lost parent/child relationship"),
        StateInfo(S.DEGRADED, "🔻", "#F97316", False, C.ACTIVE, "Running with reduced capacity"),
    )
}

# ORPHANED is reachable from every non-terminal state, but only the system may set it.
_ORPHANABLE = frozenset(s for s, info in STATE_TABLE.items() if not info.terminal)

TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.PENDING: frozenset({S.QUEUED, S.RUNNING, S.CANCELLED, S.FAILED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset(
        {S.COMPLETED, S.PARTIALLY_COMPLETED, S.FAILED, S.TIMEOUT, S.PAUSED, S.STOPPED, S.DEGRADED}
    ),
    S.PAUSED: frozenset({S.RUNNING, S.STOPPED, S.CANCELLED}),
    S.DEGRADED: frozenset({S.RUNNING, S.FAILED, S.COMPLETED, S.STOPPED}),
    # Terminal in the reference table, yet the guide lets a partial result be resumed or
    # accepted (ARCHITECTURE.md §4): it is the one terminal state that is not frozen.
    S.PARTIALLY_COMPLETED: frozenset({S.RUNNING, S.COMPLETED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.TIMEOUT: frozenset(),
    S.STOPPED: frozenset(),
    S.CANCELLED: frozenset(),
    S.ORPHANED: frozenset(),
}
TRANSITIONS = {
    state: targets | {S.ORPHANED} if state in _ORPHANABLE else targets
    for state, targets in TRANSITIONS.items()
}

SYSTEM_ONLY_TARGETS = frozenset({S.ORPHANED})

# Sessions that hold one of the MAX_CONCURRENT_SESSIONS running slots.
RUNNING_STATES = frozenset({S.RUNNING, S.DEGRADED})

# Sessions whose run ended badly enough that a retry makes sense (ARCHITECTURE.md §4).
RETRYABLE_STATES = frozenset({S.FAILED, S.TIMEOUT, S.STOPPED})


def can_transition(source: SessionState, target: SessionState) -> bool:
    """Whether ``source -> target`` is in the transition table."""
    return target in TRANSITIONS[source]


def allowed_targets(source: SessionState) -> list[SessionState]:
    """The states reachable from ``source``, in the order of the reference table."""
    return [s for s in SessionState if s in TRANSITIONS[source]]


def is_terminal(state: SessionState) -> bool:
    return STATE_TABLE[state].terminal
