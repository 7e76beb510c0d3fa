"""The provider outage rule: DEGRADED once per outage, over only when the provider has
answered, and given up past the budget or when OpenCode stops retrying."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.provider_outage import (
    MAX_ERROR_CHARS,
    Outage,
    Signal,
    Step,
    exhausted_reason,
    next_step,
)

BUDGET = 60.0
ONGOING = Outage(started_at=100.0, retries=2, error="503 overloaded")


@pytest.mark.parametrize(
    ("outage", "signal", "now", "error", "expected_step", "expected_outage"),
    [
        # No outage: only a retry begins one.
        (None, Signal.RETRYING, 5.0, "503 down", Step.BEGAN, Outage(5.0, 1, "503 down")),
        (None, Signal.TRYING, 5.0, None, Step.NOTHING, None),
        (None, Signal.ANSWERED, 5.0, None, Step.NOTHING, None),
        (None, Signal.TICK, 5.0, None, Step.NOTHING, None),
        (None, Signal.GAVE_UP, 5.0, "APIError", Step.NOTHING, None),
        # Inside the budget: a new try or another retry is the same outage.
        (ONGOING, Signal.TRYING, 130.0, None, Step.NOTHING, ONGOING),
        (ONGOING, Signal.TICK, 160.0, None, Step.NOTHING, ONGOING),
        (ONGOING, Signal.RETRYING, 130.0, "timeout", Step.NOTHING, Outage(100.0, 3, "timeout")),
        (ONGOING, Signal.RETRYING, 130.0, None, Step.NOTHING, Outage(100.0, 3, "503 overloaded")),
        # Only an answer ends it, even a late one.
        (ONGOING, Signal.ANSWERED, 130.0, None, Step.ENDED, None),
        (ONGOING, Signal.ANSWERED, 900.0, None, Step.ENDED, None),
        # Past the budget, whatever happens short of an answer gives up.
        (ONGOING, Signal.TICK, 160.5, None, Step.EXHAUSTED, ONGOING),
        (ONGOING, Signal.TRYING, 161.0, None, Step.EXHAUSTED, ONGOING),
        (ONGOING, Signal.RETRYING, 161.0, "503", Step.EXHAUSTED, Outage(100.0, 3, "503")),
        # OpenCode stopped retrying: given up at once, with its error.
        (ONGOING, Signal.GAVE_UP, 101.0, "APIError", Step.EXHAUSTED, Outage(100.0, 2, "APIError")),
    ],
)
def test_the_outage_rule(
    outage: Outage | None,
    signal: Signal,
    now: float,
    error: str | None,
    expected_step: Step,
    expected_outage: Outage | None,
) -> None:
    step = next_step(outage, signal, now=now, budget_seconds=BUDGET, error=error)
    assert step.step == expected_step
    assert step.outage == expected_outage


@given(
    st.lists(
        st.tuples(
            st.sampled_from([Signal.RETRYING, Signal.TRYING, Signal.TICK, Signal.ANSWERED]),
            st.floats(min_value=0.0, max_value=30.0),
        ),
        max_size=60,
    )
)
def test_between_two_begins_there_is_always_an_answer(
    signals: list[tuple[Signal, float]],
) -> None:
    """The flapping this rule ends: a session shown DEGRADED again must have heard the
    provider answer since it was last shown DEGRADED, and it gives up at most once."""
    outage: Outage | None = None
    now = 0.0
    began = answered_since = exhausted = 0
    for signal, pause in signals:
        now += pause
        step = next_step(outage, signal, now=now, budget_seconds=BUDGET, error="boom")
        if step.step == Step.EXHAUSTED:
            exhausted += 1
            break  # the executor aborts the turn: nothing follows
        if step.step == Step.BEGAN:
            assert began == answered_since, "a second outage began without an answer between"
            began += 1
        if step.step == Step.ENDED:
            answered_since += 1
        outage = step.outage
        assert outage is None or now - outage.started_at <= BUDGET
    assert exhausted <= 1


def test_the_reason_names_the_error_the_budget_and_the_fix() -> None:
    reason = exhausted_reason(
        ONGOING, now=161.0, budget_seconds=BUDGET, fix="set OPENCODE_MODEL=provider/model"
    )
    assert reason == (
        "the model provider kept failing for 61 s (2 retries), past the provider retry budget "
        "of 60 s (PROVIDER_RETRY_BUDGET_SECONDS): 503 overloaded; set OPENCODE_MODEL=provider/model"
    )
    early = exhausted_reason(
        Outage(100.0, 1, "APIError: 500"), now=170.0, budget_seconds=180.0, fix="fix it"
    )
    assert early == (
        "the model provider kept failing for 70 s (1 retry), until OpenCode stopped retrying "
        "it: APIError: 500; fix it"
    )


def test_a_long_provider_error_is_cut() -> None:
    step = next_step(None, Signal.RETRYING, now=0.0, budget_seconds=BUDGET, error="x" * 5000)
    assert step.outage is not None
    assert len(step.outage.error) == MAX_ERROR_CHARS
