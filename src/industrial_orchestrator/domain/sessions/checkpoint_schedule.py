"""When the engine takes a periodic checkpoint of a running session.

Besides the checkpoints taken at the moments that matter (planned, after a task, verified),
a running session gets one every interval in which something changed, so that a long
stretch of work is never far from the last state it can be retried or forked from. One
that would repeat the last checkpoint (same tasks, same work in flight, same usage, same
files) is not taken: it would add nothing to resume from, and the rotation (the newest
100 are kept) would push the meaningful ones of a long-waiting session out. The look
itself is recorded, and the next one comes an interval after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class PeriodicCheckpoints:
    every: timedelta

    def due(
        self,
        *,
        last: datetime | None,
        started: datetime | None,
        now: datetime,
        checked: datetime | None = None,
    ) -> bool:
        """Whether ``every`` has passed since the session's last checkpoint (``last``) or
        the last look that found nothing to record (``checked``), whichever is later, or
        since it started when it has neither. A session with none has no clock to go by."""
        at = self.next_at(last=last, started=started, checked=checked)
        return at is not None and now >= at

    def next_at(
        self,
        *,
        last: datetime | None,
        started: datetime | None,
        checked: datetime | None = None,
    ) -> datetime | None:
        """When the next periodic checkpoint is due (``due`` from then on); None for a
        session with no clock to go by."""
        looked = [moment for moment in (last, checked) if moment is not None]
        since = max(looked) if looked else started
        return None if since is None else since + self.every


REPEATED = ("phase", "review_round", "finished_tasks", "tasks", "tokens_used", "cost_usd")
"""What a checkpoint holds that, unchanged, makes a new one a repeat (with ``in_flight``
but for its leases' expiry, which every heartbeat moves on)."""


def repeats(last: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether a checkpoint holding ``now`` would repeat the one holding ``last`` (their
    files compared apart)."""
    if any(last.get(key) != now.get(key) for key in REPEATED):
        return False
    return _holders(last) == _holders(now)


def _holders(data: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    flight = data.get("in_flight") or {}
    return {
        task: (held.get("attempt"), held.get("agent_id"))
        for task, held in flight.items()
        if isinstance(held, Mapping)
    }
