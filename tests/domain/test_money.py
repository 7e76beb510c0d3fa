"""Dollars as people read them: cents, four decimals below a cent, never float noise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.money import format_usd

CASES = [
    (0.0, "$0.00"),
    (0.023167999999999998, "$0.02"),
    (0.1 + 0.2, "$0.30"),
    (0.0032, "$0.0032"),
    (0.005, "$0.0050"),
    (0.009949, "$0.0099"),
    # Decided on the rounded amount: never "$0.0100".
    (0.00999, "$0.01"),
    (0.01, "$0.01"),
    (0.0149999, "$0.01"),
    # Half up, as the dashboard's script (toFixed) rounds.
    (0.125, "$0.13"),
    (12.345, "$12.35"),
    (1234.567, "$1,234.57"),
    (1e9, "$1,000,000,000.00"),
    (0.0001, "$0.0001"),
    (0.00005, "$0.0001"),
    # Spent, but less than the finest amount shown: not "$0.0000", which reads as nothing.
    (0.00004, "<$0.0001"),
    (-0.5, "-$0.50"),
]


@pytest.mark.parametrize(("amount", "shown"), CASES)
def test_format_usd(amount: float, shown: str) -> None:
    assert format_usd(amount) == shown


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_at_most_four_decimals_and_cents_from_a_cent_on(amount: float) -> None:
    shown = format_usd(amount)
    digits = shown.removeprefix("<").removeprefix("$").replace(",", "")
    decimals = len(digits.split(".")[1])
    assert decimals in (2, 4)
    if amount >= 0.01:
        assert decimals == 2
        assert abs(float(digits) - amount) <= 0.005 + amount * 1e-15
