"""A clock for the fast tests: wall time and monotonic time that move only when told,
together, so that the services' leases and timers (``datetime``) and the runtime's
waits (``time.monotonic``) agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = start
        self._elapsed = 1000.0  # as a machine that has been up a while: never 0

    def __call__(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += timedelta(seconds=seconds)
        self._elapsed += seconds
