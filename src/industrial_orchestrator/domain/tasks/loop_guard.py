"""The loop and stall guard: when an agent's attempt at a task has stopped getting anywhere.

An attempt is watched step by step (a step: one model answer and the tools it called),
and stopped when the agent

* calls the same tool with the same input ``repeat_limit`` times in a row,
* ends ``stall_steps`` steps in a row with a working tree it has had before in this
  attempt (a *fingerprint* of the tree: the same string means the same files, so an
  agent that writes a file and takes it back again makes no progress either), or
* has used more than ``token_share`` of its session's token budget.

A threshold of 0 turns its check off; a session without a token budget has no share.

The guard only decides. The executor acts on a ``GuardTrip``: it aborts the turn, rolls
the task's files back to where the attempt started, and ends the attempt FAILED with an
error starting with ``GUARD_ERROR_PREFIX``; the leases then hand the task to another
agent (``domain.tasks.loop_reroute``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

GUARD_ERROR_PREFIX = "stopped by the loop guard: "
"""How the error of an attempt the guard stopped begins (the leases look for it)."""

_SHOWN_INPUT_CHARS = 200


class TripKind(StrEnum):
    REPEATED_TOOL_CALL = "repeated_tool_call"
    NO_PROGRESS = "no_progress"
    TOKEN_SHARE = "token_share"


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """The thresholds (``GUARD_*`` settings); 0 turns a check off."""

    repeat_limit: int = 4
    """Identical tool calls in a row that stop the attempt."""
    stall_steps: int = 8
    """Steps in a row without a new working tree that stop the attempt."""
    token_share: float = 0.5
    """Fraction of the session's ``max_tokens`` one attempt may use."""

    def __post_init__(self) -> None:
        if self.repeat_limit < 0 or self.stall_steps < 0:
            raise ValueError("repeat_limit and stall_steps are 0 (off) or more")
        if not 0 <= self.token_share <= 1:
            raise ValueError("token_share is between 0 (off) and 1")

    @property
    def enabled(self) -> bool:
        return bool(self.repeat_limit or self.stall_steps or self.token_share)

    def token_limit(self, max_tokens: int | None) -> int | None:
        """The tokens one attempt may use in a session with budget ``max_tokens``."""
        if not self.token_share or not max_tokens:
            return None
        return int(self.token_share * max_tokens)


@dataclass(frozen=True, slots=True)
class GuardTrip:
    """Why the guard stopped an attempt."""

    kind: TripKind
    message: str

    @property
    def error(self) -> str:
        """The attempt's error: what the leases and the operator see."""
        return GUARD_ERROR_PREFIX + self.message


@dataclass(frozen=True, slots=True)
class LoopStop:
    """What the executor did about a trip: the record of the event ``task.loop_stopped``."""

    trip: GuardTrip
    rolled_back: tuple[str, ...] = ()
    """The paths restored to the attempt's start (deleted when new since)."""
    rollback_error: str | None = None
    """Why the files could not be rolled back, if they could not."""


def is_guard_stop(error: str | None) -> bool:
    """Whether an attempt's error says the guard stopped it."""
    return error is not None and error.startswith(GUARD_ERROR_PREFIX)


def canonical_call(tool: str, arguments: Mapping[str, Any] | None) -> str:
    """One string per distinct call: keys sorted, so the same input always reads the same."""
    rendered = json.dumps(
        dict(arguments or {}),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return f"{tool} {rendered}"


class LoopGuard:
    """Watches one attempt; fed what the agent does, it answers a ``GuardTrip`` once the
    attempt should be stopped (and the same trip on every later call)."""

    def __init__(
        self,
        policy: GuardPolicy,
        *,
        token_budget: int | None = None,
        start_fingerprint: str | None = None,
    ) -> None:
        self._policy = policy
        self._token_limit = policy.token_limit(token_budget)
        self._token_budget = token_budget
        self._last_call: str | None = None
        self._repeats = 0
        self._seen: set[str] = set() if start_fingerprint is None else {start_fingerprint}
        self._stalled = 0
        self.tripped: GuardTrip | None = None

    def tool_call(self, tool: str, arguments: Mapping[str, Any] | None) -> GuardTrip | None:
        """The agent called ``tool`` with ``arguments``."""
        if self.tripped is not None:
            return self.tripped
        call = canonical_call(tool, arguments)
        self._repeats = self._repeats + 1 if call == self._last_call else 1
        self._last_call = call
        limit = self._policy.repeat_limit
        if limit and self._repeats >= limit:
            shown = call if len(call) <= _SHOWN_INPUT_CHARS else call[:_SHOWN_INPUT_CHARS] + "…"
            return self._trip(
                TripKind.REPEATED_TOOL_CALL,
                f"the agent called {shown} {self._repeats} times in a row",
            )
        return None

    def step_finished(self, fingerprint: str | None, tokens_used: int) -> GuardTrip | None:
        """A step ended with the tree at ``fingerprint`` (None: it could not be read) and
        ``tokens_used`` tokens used by the attempt so far."""
        if self.tripped is not None:
            return self.tripped
        if self._token_limit is not None and tokens_used > self._token_limit:
            return self._trip(
                TripKind.TOKEN_SHARE,
                f"the task used {tokens_used} tokens, more than its share of "
                f"{self._token_limit} ({self._policy.token_share:g} of the session's budget "
                f"of {self._token_budget})",
            )
        if fingerprint is None or fingerprint not in self._seen:
            # An unreadable tree is no evidence of a stall: the count starts again.
            self._stalled = 0
            if fingerprint is not None:
                self._seen.add(fingerprint)
            return None
        self._stalled += 1
        limit = self._policy.stall_steps
        if limit and self._stalled >= limit:
            return self._trip(
                TripKind.NO_PROGRESS,
                f"the agent ended {self._stalled} steps in a row without changing the files "
                "into anything new",
            )
        return None

    def _trip(self, kind: TripKind, message: str) -> GuardTrip:
        self.tripped = GuardTrip(kind, message)
        return self.tripped
