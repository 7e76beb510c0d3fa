"""A provider outage as one agent's turn sees it, and when to give up on it.

OpenCode retries a failing provider on its own (5xx, 429, unreachable), saying so with
``session.status`` ``retry``, then ``busy`` again for the next try. A new *try* is not a
recovery: before this rule, every ``busy`` ended the "outage" and every ``retry`` began a
new one, so a session flapped RUNNING <-> DEGRADED on each retry and never failed. Here:

* an outage begins at the first retry and ends only when the provider has answered
  (a text, reasoning or tool part, or a finished step): that is when the session may
  leave DEGRADED and "provider answering again" is true;
* retries and new tries inside an outage change nothing but the last error;
* an outage that outlives the budget, or that OpenCode itself stops retrying (the turn
  ends with the provider's error), is *exhausted*: the attempt ends for good, with a
  reason naming the provider's error and the setting to fix, since trying the task again
  would only wait out the same outage.

Times are seconds on any monotonic clock; nothing here reads one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

MAX_ERROR_CHARS = 300


class Signal(StrEnum):
    RETRYING = "retrying"
    """OpenCode waits to retry the provider (``session.status`` ``retry``)."""
    TRYING = "trying"
    """OpenCode sends the request (again): ``busy``. No evidence of an answer."""
    ANSWERED = "answered"
    """The provider's answer arrived (a part of the assistant's message)."""
    TICK = "tick"
    """Nothing happened; time passed."""
    GAVE_UP = "gave_up"
    """The turn ended with the provider's error (OpenCode stopped retrying)."""


class Step(StrEnum):
    NOTHING = "nothing"
    BEGAN = "began"
    """An outage began: show the session DEGRADED, once."""
    ENDED = "ended"
    """The provider answered again: the session may go back to RUNNING."""
    EXHAUSTED = "exhausted"
    """Give up: abort the turn and fail the attempt for good."""


@dataclass(frozen=True, slots=True)
class Outage:
    started_at: float
    retries: int
    error: str
    """The provider's last error, as OpenCode reported it."""

    def seconds(self, now: float) -> float:
        return max(0.0, now - self.started_at)


@dataclass(frozen=True, slots=True)
class OutageStep:
    outage: Outage | None
    """The outage after the signal (None: the provider is answering)."""
    step: Step


def next_step(
    outage: Outage | None,
    signal: Signal,
    *,
    now: float,
    budget_seconds: float,
    error: str | None = None,
) -> OutageStep:
    """What ``signal`` at ``now`` does to ``outage``."""
    if signal == Signal.ANSWERED:
        return OutageStep(None, Step.NOTHING if outage is None else Step.ENDED)
    if outage is None:
        if signal == Signal.RETRYING:
            return OutageStep(Outage(now, 1, _short(error)), Step.BEGAN)
        return OutageStep(None, Step.NOTHING)
    if signal == Signal.RETRYING:
        outage = dataclasses.replace(
            outage, retries=outage.retries + 1, error=_short(error) if error else outage.error
        )
    elif signal == Signal.GAVE_UP:
        if error:
            outage = dataclasses.replace(outage, error=_short(error))
        return OutageStep(outage, Step.EXHAUSTED)
    if outage.seconds(now) > budget_seconds:
        return OutageStep(outage, Step.EXHAUSTED)
    return OutageStep(outage, Step.NOTHING)


def exhausted_reason(outage: Outage, *, now: float, budget_seconds: float, fix: str) -> str:
    """Why the attempt ended: how long the provider failed, its last error, and what
    the operator should set."""
    seconds = outage.seconds(now)
    how = (
        f"past the provider retry budget of {budget_seconds:g} s (PROVIDER_RETRY_BUDGET_SECONDS)"
        if seconds > budget_seconds
        else "until OpenCode stopped retrying it"
    )
    return (
        f"the model provider kept failing for {seconds:.0f} s ({outage.retries} "
        f"retr{'y' if outage.retries == 1 else 'ies'}), {how}: {outage.error}; {fix}"
    )


def _short(error: str | None) -> str:
    return (error or "provider error").strip()[:MAX_ERROR_CHARS] or "provider error"
