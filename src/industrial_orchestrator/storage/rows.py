"""Conversions between database rows and domain objects, shared by the repositories."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping

from ..domain.priorities import Priority
from ..domain.sessions.checkpoint import Checkpoint
from ..domain.sessions.options import SessionOptions
from ..domain.sessions.session import Actor, Session, SessionPhase, Transition, WorktreeBinding
from ..domain.sessions.states import SessionState


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def changed_columns(
    old: dict[str, Any], new: dict[str, Any], *, version: int | None
) -> dict[str, Any]:
    """The columns of ``new`` that differ from ``old``: the SET of a guarded UPDATE built
    once (its SET is the execution's own columns). With none changed, ``version`` (the
    guard has just said the row is at it), as an UPDATE with no SET is not SQL; None when
    the statement sets a column of its own."""
    changed = {key: value for key, value in new.items() if old[key] != value}
    if not changed and version is not None:
        return {"version": version}
    return changed


def _required_utc(moment: datetime) -> datetime:
    result = utc(moment)
    assert result is not None
    return result


def session_values(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "title": session.title,
        "initial_prompt": session.initial_prompt,
        "priority": session.priority.value,
        "priority_rank": session.priority.rank,
        "status": session.status.value,
        "phase": session.phase.value if session.phase else None,
        "status_reason": session.status_reason,
        "workspace": session.workspace,
        "metadata": session.metadata,
        "version": session.version,
        "transition_seq": session.transition_seq,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "started_at": session.started_at,
        "finished_at": session.finished_at,
        "duration_seconds": session.duration_seconds,
        "retry_of": session.retry_of,
        "attempt": session.attempt,
        "restored_from_checkpoint": session.restored_from_checkpoint,
        "forked_from": session.forked_from,
        "tokens_used": session.tokens_used,
        "cost_usd": session.cost_usd,
        "options": session.options.to_json(),
        "review_round": session.review_round,
    }


def session_from_row(row: RowMapping) -> Session:
    return Session(
        id=row["id"],
        title=row["title"],
        initial_prompt=row["initial_prompt"],
        priority=Priority(row["priority"]),
        status=SessionState(row["status"]),
        phase=SessionPhase(row["phase"]) if row["phase"] else None,
        status_reason=row["status_reason"],
        workspace=row["workspace"],
        metadata=dict(row["metadata"] or {}),
        version=row["version"],
        transition_seq=row["transition_seq"],
        created_at=_required_utc(row["created_at"]),
        updated_at=_required_utc(row["updated_at"]),
        started_at=utc(row["started_at"]),
        finished_at=utc(row["finished_at"]),
        retry_of=row["retry_of"],
        attempt=row["attempt"],
        restored_from_checkpoint=row["restored_from_checkpoint"],
        forked_from=row["forked_from"],
        tokens_used=row["tokens_used"],
        cost_usd=row["cost_usd"],
        options=SessionOptions.from_json(row["options"]),
        review_round=int(row["review_round"]),
        worktree=(
            WorktreeBinding(row["worktree"], row["branch"] or "", row["base_commit"] or "")
            if row["worktree"]
            else None
        ),
        checkpoint_checked_at=utc(row["checkpoint_checked_at"]),
    )


def transition_values(record: Transition) -> dict[str, Any]:
    return {
        "session_id": record.session_id,
        "seq": record.seq,
        "from_state": record.from_state.value if record.from_state else None,
        "to_state": record.to_state.value,
        "reason": record.reason,
        "actor": record.actor.value,
        "at": record.at,
    }


def transition_from_row(row: RowMapping) -> Transition:
    return Transition(
        session_id=row["session_id"],
        seq=row["seq"],
        from_state=SessionState(row["from_state"]) if row["from_state"] else None,
        to_state=SessionState(row["to_state"]),
        reason=row["reason"],
        actor=Actor(row["actor"]),
        at=_required_utc(row["at"]),
    )


def checkpoint_values(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "id": checkpoint.id,
        "session_id": checkpoint.session_id,
        "seq": checkpoint.seq,
        "label": checkpoint.label,
        "reason": checkpoint.reason,
        "data": checkpoint.data,
        "created_at": checkpoint.created_at,
    }


def checkpoint_from_row(row: RowMapping) -> Checkpoint:
    return Checkpoint(
        id=row["id"],
        session_id=row["session_id"],
        seq=row["seq"],
        label=row["label"],
        reason=row["reason"],
        data=dict(row["data"] or {}),
        created_at=_required_utc(row["created_at"]),
    )
