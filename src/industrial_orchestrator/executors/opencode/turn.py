"""One OpenCode turn as the executor follows it: the session it runs in, what it has
said so far (tool states, text not yet shown, permissions asked), how it stands with
the provider and the loop guard, and how it ended. The event handlers, the outage and
loop watches fill it in; the executor reads it to build the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...domain.provider_outage import Outage
from ...domain.tasks.loop_guard import GuardTrip, LoopGuard
from ..base import HoldUp, LogLine


@dataclass(slots=True)
class Turn:
    """What one OpenCode turn has said so far."""

    session_id: str
    directory: str
    emit: LogLine
    hold_up: HoldUp | None = None
    """Says what holds the task's attempt up (none for a turn outside any task)."""
    busy_seen: bool = False
    idle: bool = False
    error: str | None = None
    outage: Outage | None = None
    """The provider failing since, until it answers (``domain.provider_outage``)."""
    model: str | None = None
    """The model asked for (None: OpenCode's default), named when the provider fails."""
    final: bool = False
    """The attempt ended for good: trying again would meet the same outage."""
    deadline_passed: bool = False
    tool_states: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    """Text not yet emitted, by part id."""
    spoke: bool = False
    """Some of the agent's text was shown (the stream can fall silent before it comes)."""
    asked: set[str] = field(default_factory=set)
    guard: LoopGuard | None = None
    """Watches a task's turn (none for a turn outside any task)."""
    snapshot: str | None = None
    """The files when the attempt started (a commit), for a roll-back."""
    trip: GuardTrip | None = None
    watched_calls: set[str] = field(default_factory=set)
    steps: set[str] = field(default_factory=set)
    tokens: int = 0
    """Tokens of the steps finished so far."""
