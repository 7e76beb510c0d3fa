"""What a session's end says about the work, for the success rate.

The state categories group states for display; they are not a verdict. A session the
operator stopped or cancelled did not fail: nobody let it finish, so it says nothing about
whether the agents can do the work. Counting it as a failure made the overview's success
rate drop every time an operator changed their mind. The rate is therefore judged only on
sessions that ran to a verdict: succeeded (COMPLETED, PARTIALLY_COMPLETED) against failed
(FAILED, TIMEOUT). Ended by the operator (STOPPED, CANCELLED) and lost by the system
(ORPHANED) are counted apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .states import SessionState


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ENDED_BY_OPERATOR = "ENDED_BY_OPERATOR"
    LOST = "LOST"


_S = SessionState

OUTCOMES: dict[SessionState, Outcome | None] = {
    _S.PENDING: None,
    _S.QUEUED: None,
    _S.RUNNING: None,
    _S.PAUSED: None,
    _S.DEGRADED: None,
    _S.COMPLETED: Outcome.SUCCEEDED,
    # It may still be resumed, but what it delivered is a (partial) success already.
    _S.PARTIALLY_COMPLETED: Outcome.SUCCEEDED,
    _S.FAILED: Outcome.FAILED,
    _S.TIMEOUT: Outcome.FAILED,
    _S.STOPPED: Outcome.ENDED_BY_OPERATOR,
    _S.CANCELLED: Outcome.ENDED_BY_OPERATOR,
    _S.ORPHANED: Outcome.LOST,
}
"""Every state's outcome; None while the session has not ended."""


def states_of(outcome: Outcome) -> tuple[SessionState, ...]:
    """The states with ``outcome``, in the order of the state table."""
    return tuple(state for state in SessionState if OUTCOMES[state] is outcome)


@dataclass(frozen=True, slots=True)
class OutcomeTally:
    succeeded: int
    failed: int
    ended_by_operator: int
    lost: int

    @property
    def success_rate(self) -> float | None:
        """Succeeded over succeeded + failed; None before any session reached a verdict."""
        judged = self.succeeded + self.failed
        return self.succeeded / judged if judged else None


def tally(by_state: Mapping[SessionState, int]) -> OutcomeTally:
    """Sessions per outcome, from a count per state (states left out count 0)."""
    counts = dict.fromkeys(Outcome, 0)
    for state, count in by_state.items():
        outcome = OUTCOMES[state]
        if outcome is not None:
            counts[outcome] += count
    return OutcomeTally(
        succeeded=counts[Outcome.SUCCEEDED],
        failed=counts[Outcome.FAILED],
        ended_by_operator=counts[Outcome.ENDED_BY_OPERATOR],
        lost=counts[Outcome.LOST],
    )
