"""When the engine takes a periodic checkpoint of a running session.

Besides the checkpoints taken at the moments that matter (planned, after a task, verified),
a running session gets one at least every interval, so that a long stretch of work is
never far from the last state it can be retried or forked from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class PeriodicCheckpoints:
    every: timedelta

    def due(self, *, last: datetime | None, started: datetime | None, now: datetime) -> bool:
        """Whether ``every`` has passed since the session's last checkpoint (``last``), or
        since it started when it has none. A session with neither has no clock to go by."""
        at = self.next_at(last=last, started=started)
        return at is not None and now >= at

    def next_at(self, *, last: datetime | None, started: datetime | None) -> datetime | None:
        """When the next periodic checkpoint is due (``due`` from then on); None for a
        session with no clock to go by."""
        since = last if last is not None else started
        return None if since is None else since + self.every
