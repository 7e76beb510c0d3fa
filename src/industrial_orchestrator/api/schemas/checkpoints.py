"""Checkpoint resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from ...domain.sessions.checkpoint import Checkpoint
from .common import StrictModel


class CheckpointCreate(StrictModel):
    label: str = Field(min_length=1, max_length=200, description="Short name, e.g. 'after tests'")
    reason: str | None = Field(None, max_length=2000, description="Why the state was saved")
    data: dict[str, Any] = Field(
        default_factory=dict, description="The saved state: a JSON object up to 1 MiB"
    )


class CheckpointRead(BaseModel):
    id: UUID
    session_id: UUID
    seq: int = Field(description="Per-session sequence number, increasing")
    label: str
    reason: str | None
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> CheckpointRead:
        return cls(
            id=checkpoint.id,
            session_id=checkpoint.session_id,
            seq=checkpoint.seq,
            label=checkpoint.label,
            reason=checkpoint.reason,
            data=checkpoint.data,
            created_at=checkpoint.created_at,
        )


class CheckpointPage(BaseModel):
    items: list[CheckpointRead]
    total: int
    page: int
    page_size: int
