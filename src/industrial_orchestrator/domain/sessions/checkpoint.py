"""Checkpoints: saved snapshots of a session's progress, kept newest-first with rotation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from ..effects import Effect

DEFAULT_RETENTION = 100


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: UUID
    session_id: UUID
    seq: int
    label: str
    reason: str | None
    created_at: datetime
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckpointEntry:
    """A checkpoint to record: what it says, and the effect (its commit) it finishes."""

    label: str
    reason: str | None
    data: dict[str, Any]
    effect: Effect | None = None
    """Its commit's entry in the side-effect ledger, marked DONE with it."""


def oldest_kept_seq(newest_seq: int, retention: int) -> int:
    """The lowest sequence number that survives rotation once ``newest_seq`` is written."""
    return max(1, newest_seq - retention + 1)
