"""Performance tiers: every boundary exactly, the short-record rule, and monotonicity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.agents.tiers import MIN_RECORD, Tier, tier_for


@pytest.mark.parametrize(
    ("successes", "finished", "expected"),
    [
        (20, 20, Tier.ELITE),
        (19, 20, Tier.ADVANCED),  # exactly 95 %
        (96, 100, Tier.ELITE),
        (95, 100, Tier.ADVANCED),
        (86, 100, Tier.ADVANCED),
        (85, 100, Tier.COMPETENT),  # exactly 85 %
        (71, 100, Tier.COMPETENT),
        (70, 100, Tier.TRAINEE),  # exactly 70 %
        (50, 100, Tier.TRAINEE),  # exactly 50 % is still TRAINEE
        (49, 100, Tier.DEGRADED),
        (0, 100, Tier.DEGRADED),
        (10, 10, Tier.ELITE),
        (5, 10, Tier.TRAINEE),
        (4, 10, Tier.DEGRADED),
        (951, 1000, Tier.ELITE),
        (950, 1000, Tier.ADVANCED),
    ],
)
def test_boundaries(successes: int, finished: int, expected: Tier) -> None:
    assert tier_for(successes, finished - successes) is expected


@pytest.mark.parametrize(("successes", "failures"), [(0, 0), (0, 9), (9, 0), (4, 5), (1, 8)])
def test_fewer_than_ten_finished_is_competent(successes: int, failures: int) -> None:
    assert successes + failures < MIN_RECORD
    assert tier_for(successes, failures) is Tier.COMPETENT


def test_ten_finished_is_a_record() -> None:
    assert MIN_RECORD == 10
    assert tier_for(0, 10) is Tier.DEGRADED


@pytest.mark.parametrize(("successes", "failures"), [(-1, 0), (0, -1), (-3, -3)])
def test_negative_counts_are_rejected(successes: int, failures: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        tier_for(successes, failures)


def test_rank_orders_best_first() -> None:
    assert [t.rank for t in Tier] == [0, 1, 2, 3, 4]
    assert Tier.ELITE.rank < Tier.DEGRADED.rank


@given(
    finished=st.integers(min_value=MIN_RECORD, max_value=2_000),
    data=st.data(),
)
def test_tier_is_monotone_in_success_rate(finished: int, data: st.DataObject) -> None:
    a = data.draw(st.integers(min_value=0, max_value=finished))
    b = data.draw(st.integers(min_value=a, max_value=finished))
    # More successes out of the same number finished never gives a worse tier.
    assert tier_for(b, finished - b).rank <= tier_for(a, finished - a).rank
