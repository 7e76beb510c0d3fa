"""The side-effect ledger's entries, as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from ...domain.effects import CHECKPOINT_PAYLOAD, Effect, EffectKind, EffectState

# Shown by GET /sessions/{id}/checkpoints once recorded, and up to 1 MiB.
_NOT_SHOWN = frozenset({CHECKPOINT_PAYLOAD})


class EffectRead(BaseModel):
    key: str = Field(description="The idempotency key: what the effect is for")
    kind: EffectKind = Field(
        description="workspace.write (a task's files written into the workspace) or "
        "checkpoint.commit (a checkpoint's commit on the session's branch)"
    )
    state: EffectState = Field(
        description="PENDING: recorded, perhaps being done; DONE: done (or found done "
        "after a crash), never to be done again"
    )
    task_id: UUID | None
    detail: dict[str, Any] = Field(
        description="Which process did it (owner) and what came of it: files written, "
        "files found written already, the commit"
    )
    created_at: datetime | None
    done_at: datetime | None

    @classmethod
    def of(cls, effect: Effect) -> EffectRead:
        return cls(
            key=effect.key,
            kind=effect.kind,
            state=effect.state,
            task_id=effect.task_id,
            detail={k: v for k, v in effect.detail.items() if k not in _NOT_SHOWN},
            created_at=effect.created_at,
            done_at=effect.done_at,
        )


class EffectPage(BaseModel):
    items: list[EffectRead]
    total: int
    page: int
    page_size: int
