"""When a running session's periodic checkpoint is due (``PeriodicCheckpoints``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from industrial_orchestrator.domain.sessions.checkpoint_schedule import PeriodicCheckpoints, repeats

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


@pytest.mark.parametrize(
    ("last", "checked", "now", "due"),
    [
        # A look that found nothing to record counts like a checkpoint...
        (at(0), at(300), at(599), False),
        (at(0), at(300), at(600), True),
        # ...but never holds back one due since a later checkpoint.
        (at(400), at(300), at(650), False),
        (at(400), at(300), at(700), True),
        # A look with no checkpoint yet counts from itself, not from the start.
        (None, at(300), at(500), False),
    ],
)
def test_a_look_that_found_nothing_moves_the_next_one_on(
    last: datetime | None, checked: datetime, now: datetime, due: bool
) -> None:
    assert EVERY.due(last=last, started=at(0), now=now, checked=checked) is due
    next_at = EVERY.next_at(last=last, started=at(0), checked=checked)
    assert next_at is not None
    assert (now >= next_at) is due


AGENT = "7d1c0f5e-0000-4000-8000-000000000001"
HELD = {"t1": {"attempt": 1, "agent_id": AGENT, "lease_expires_at": "2026-01-01T00:05:00"}}
LAST: dict[str, object] = {
    "phase": "EXECUTING",
    "review_round": 0,
    "finished_tasks": {"t0": {"title": "a", "summary": "done"}},
    "tasks": {"t0": "COMPLETED", "t1": "RUNNING"},
    "in_flight": HELD,
    "tokens_used": 10,
    "cost_usd": 0.5,
    "commit": "abc",
    "branch": "orchestrator/1",
}


@pytest.mark.parametrize(
    ("change", "repeats_it"),
    [
        ({}, True),
        # A heartbeat moved the lease on: the same agent on the same attempt.
        ({"in_flight": {"t1": {**HELD["t1"], "lease_expires_at": "2026-01-01T00:09:00"}}}, True),
        # Where its files are is compared apart (the tree), not here.
        ({"commit": "def", "branch": "orchestrator/2"}, True),
        ({"tasks": {"t0": "COMPLETED", "t1": "READY"}}, False),
        ({"in_flight": {"t1": {**HELD["t1"], "attempt": 2}}}, False),
        ({"in_flight": {}}, False),
        ({"finished_tasks": {}}, False),
        ({"tokens_used": 11}, False),
        ({"cost_usd": 0.6}, False),
        ({"phase": "REVIEWING"}, False),
        ({"review_round": 1}, False),
    ],
)
def test_a_checkpoint_repeats_the_last_when_nothing_it_holds_changed(
    change: dict[str, object], repeats_it: bool
) -> None:
    assert repeats(LAST, {**LAST, **change}) is repeats_it
