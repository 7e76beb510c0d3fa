"""Session priorities, ordered so the scheduler can promote the most urgent first."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        """Higher is more urgent; stored beside the name so queues sort in SQL."""
        return _RANKS[self]


_RANKS = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}
