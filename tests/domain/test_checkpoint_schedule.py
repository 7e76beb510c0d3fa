"""When a running session's periodic checkpoint is due (``PeriodicCheckpoints``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from industrial_orchestrator.domain.checkpoint_schedule import PeriodicCheckpoints

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVERY = PeriodicCheckpoints(timedelta(seconds=300))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("last", "started", "now", "due"),
    [
        # Measured from the last checkpoint when there is one...
        (at(0), at(-1000), at(299), False),
        (at(0), at(-1000), at(300), True),  # exactly one interval is enough
        (at(0), at(-1000), at(301), True),
        # ...not from the start, however long ago that was.
        (at(100), at(0), at(350), False),
        # From the start while there is none.
        (None, at(0), at(299), False),
        (None, at(0), at(300), True),
        # A session that never started has no clock to go by.
        (None, None, at(10_000), False),
        # A checkpoint in the future (clocks of two replicas) is not due.
        (at(10), at(0), at(0), False),
    ],
)
def test_due(last: datetime | None, started: datetime | None, now: datetime, due: bool) -> None:
    assert EVERY.due(last=last, started=started, now=now) is due


@pytest.mark.parametrize(("seconds", "due"), [(59, False), (60, True)])
def test_the_interval_is_the_policys(seconds: float, due: bool) -> None:
    every_minute = PeriodicCheckpoints(timedelta(minutes=1))
    assert every_minute.due(last=at(0), started=None, now=at(seconds)) is due


@pytest.mark.parametrize(
    ("last", "started", "next_at"),
    [
        (at(0), at(-1000), at(300)),  # one interval after the last checkpoint
        (None, at(50), at(350)),  # after the start while there is none
        (None, None, None),  # no clock: no timer
    ],
)
def test_the_next_one_is_due_when_due_says_so(
    last: datetime | None, started: datetime | None, next_at: datetime | None
) -> None:
    assert EVERY.next_at(last=last, started=started) == next_at
    if next_at is not None:
        just_before = next_at - timedelta(microseconds=1)
        assert not EVERY.due(last=last, started=started, now=just_before)
        assert EVERY.due(last=last, started=started, now=next_at)
