"""The side-effect ledger: what the orchestrator does outside its database.

Writing a task's files into a workspace and committing a checkpoint to a session's git
branch cannot share a transaction with the database. So each is recorded, under an
idempotency key, before it is done (PENDING), and marked DONE after. A process killed
between the two leaves a PENDING entry behind; whoever finishes it first looks for the
effect's own evidence (the files' contents, a commit carrying the key) and does only what
is missing. The key is made from what the effect is for (a task's attempt, a checkpoint's
reason), so a resumed, retried or repeated step finds the entry instead of doing the
effect a second time.

Webhook deliveries keep their own ledger (``domain.webhooks``): a delivery is queued
before it is sent and marked after, and one cut off in between is sent again with the
same delivery id for the receiver to recognise.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

MAX_KEY_LENGTH = 200


class EffectKind(StrEnum):
    WORKSPACE_WRITE = "workspace.write"
    """A task's delivered files written into its session's workspace."""
    CHECKPOINT_COMMIT = "checkpoint.commit"
    """A checkpoint's commit on its session's branch, and the checkpoint that names it."""


class EffectState(StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"


@dataclass(frozen=True, slots=True)
class Effect:
    key: str
    kind: EffectKind
    session_id: UUID | None
    task_id: UUID | None
    state: EffectState
    detail: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    done_at: datetime | None = None

    @property
    def is_done(self) -> bool:
        return self.state == EffectState.DONE


def pending_effect(
    key: str,
    kind: EffectKind,
    *,
    now: datetime,
    session_id: UUID | None = None,
    task_id: UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> Effect:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"an effect key has 1 to {MAX_KEY_LENGTH} characters: {key!r}")
    return Effect(
        key=key,
        kind=kind,
        session_id=session_id,
        task_id=task_id,
        state=EffectState.PENDING,
        detail=dict(detail or {}),
        created_at=now,
    )


def finished(
    effect: Effect,
    now: datetime,
    outcome: dict[str, Any] | None = None,
    *,
    drop: Collection[str] = (),
) -> Effect:
    """``effect`` DONE, with ``outcome`` added to its detail and the ``drop`` keys taken
    out (what only finishing it after a crash needed)."""
    kept = {k: v for k, v in effect.detail.items() if k not in drop}
    return replace(effect, state=EffectState.DONE, detail={**kept, **(outcome or {})}, done_at=now)


CHECKPOINT_PAYLOAD = "data"
"""A checkpoint effect's detail key holding the checkpoint's data until it is recorded."""


def workspace_write_key(task_id: UUID, attempt: int) -> str:
    """One write per attempt: a retry's new attempt writes its own files."""
    return f"write:{task_id}:{attempt}"


def checkpoint_key(session_id: UUID, reason: str) -> str:
    """``reason`` names the moment (``after-task:<id>``, ``planned``…), so taking the
    same moment's checkpoint again finds this key."""
    return f"checkpoint:{session_id}:{reason}"[:MAX_KEY_LENGTH]
