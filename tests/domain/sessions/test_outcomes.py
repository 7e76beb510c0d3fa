"""The success rate: succeeded over succeeded + failed; stopped, cancelled and orphaned
sessions are counted apart and never lower it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.sessions.outcomes import OUTCOMES, Outcome, states_of, tally
from industrial_orchestrator.domain.sessions.states import STATE_TABLE, SessionState

S = SessionState

EXPECTED = {
    S.PENDING: None,
    S.QUEUED: None,
    S.RUNNING: None,
    S.PAUSED: None,
    S.DEGRADED: None,
    S.COMPLETED: Outcome.SUCCEEDED,
    S.PARTIALLY_COMPLETED: Outcome.SUCCEEDED,
    S.FAILED: Outcome.FAILED,
    S.TIMEOUT: Outcome.FAILED,
    S.STOPPED: Outcome.ENDED_BY_OPERATOR,
    S.CANCELLED: Outcome.ENDED_BY_OPERATOR,
    S.ORPHANED: Outcome.LOST,
}


@pytest.mark.parametrize("state", list(SessionState))
def test_every_state_has_its_outcome(state: SessionState) -> None:
    assert OUTCOMES[state] is EXPECTED[state]
    # Only an ended session has an outcome.
    assert (OUTCOMES[state] is None) == (not STATE_TABLE[state].terminal)


@pytest.mark.parametrize(
    ("by_state", "succeeded", "failed", "by_operator", "lost", "rate"),
    [
        ({}, 0, 0, 0, 0, None),
        ({S.RUNNING: 3, S.PENDING: 2}, 0, 0, 0, 0, None),
        # Only stopped and cancelled sessions: no verdict yet, not 0 %.
        ({S.STOPPED: 2, S.CANCELLED: 5}, 0, 0, 7, 0, None),
        ({S.COMPLETED: 1}, 1, 0, 0, 0, 1.0),
        ({S.COMPLETED: 1, S.CANCELLED: 9, S.STOPPED: 9}, 1, 0, 18, 0, 1.0),
        ({S.COMPLETED: 1, S.FAILED: 1}, 1, 1, 0, 0, 0.5),
        ({S.PARTIALLY_COMPLETED: 1, S.TIMEOUT: 3}, 1, 3, 0, 0, 0.25),
        ({S.COMPLETED: 2, S.PARTIALLY_COMPLETED: 1, S.FAILED: 1, S.STOPPED: 4}, 3, 1, 4, 0, 0.75),
        ({S.FAILED: 2, S.ORPHANED: 1}, 0, 2, 0, 1, 0.0),
        ({S.COMPLETED: 3, S.ORPHANED: 5}, 3, 0, 0, 5, 1.0),
    ],
)
def test_tally_and_success_rate(
    by_state: dict[SessionState, int],
    succeeded: int,
    failed: int,
    by_operator: int,
    lost: int,
    rate: float | None,
) -> None:
    counted = tally(by_state)
    assert (counted.succeeded, counted.failed, counted.ended_by_operator, counted.lost) == (
        succeeded,
        failed,
        by_operator,
        lost,
    )
    assert counted.success_rate == (pytest.approx(rate) if rate is not None else None)


def test_states_of_an_outcome_follow_the_state_table() -> None:
    assert states_of(Outcome.SUCCEEDED) == (S.COMPLETED, S.PARTIALLY_COMPLETED)
    assert states_of(Outcome.FAILED) == (S.FAILED, S.TIMEOUT)
    assert states_of(Outcome.ENDED_BY_OPERATOR) == (S.STOPPED, S.CANCELLED)
    assert states_of(Outcome.LOST) == (S.ORPHANED,)


@given(
    st.dictionaries(st.sampled_from(list(SessionState)), st.integers(0, 1000)),
    st.sampled_from([S.STOPPED, S.CANCELLED, S.ORPHANED, S.RUNNING, S.PAUSED]),
    st.integers(1, 1000),
)
def test_sessions_without_a_verdict_never_move_the_rate(
    by_state: dict[SessionState, int], unjudged: SessionState, more: int
) -> None:
    before = tally(by_state).success_rate
    after = tally({**by_state, unjudged: by_state.get(unjudged, 0) + more}).success_rate
    assert after == before
