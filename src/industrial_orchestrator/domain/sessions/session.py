"""The session aggregate: a frozen record, and the rule that moves it from state to state.

The domain decides and records; it does not act. ``transition`` returns the new session
and the history row to store; the service writes both in one guarded transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from ..errors import IllegalTransition
from ..plain_values import identifier, moment, optional_identifier, required_moment
from ..priorities import Priority
from .options import SessionOptions
from .states import (
    RUNNING_STATES,
    SessionState,
    allowed_targets,
    can_transition,
    is_terminal,
)


class SessionPhase(StrEnum):
    """Where a RUNNING session is in its work (user guide §4)."""

    PLANNING = "PLANNING"
    EXECUTING = "EXECUTING"
    REVIEWING = "REVIEWING"


class Actor(StrEnum):
    """Who asked for a transition, recorded in the history for audit."""

    OPERATOR = "operator"
    SYSTEM = "system"
    SCHEDULER = "scheduler"


@dataclass(frozen=True, slots=True)
class WorktreeBinding:
    """The session's own git working tree: its agents' files, on its own branch."""

    path: str
    branch: str
    base_commit: str


@dataclass(frozen=True, slots=True)
class Session:
    id: UUID
    title: str
    initial_prompt: str
    priority: Priority
    status: SessionState
    created_at: datetime
    updated_at: datetime
    version: int = 1
    transition_seq: int = 1
    phase: SessionPhase | None = None
    workspace: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    status_reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retry_of: UUID | None = None
    attempt: int = 1
    restored_from_checkpoint: UUID | None = None
    forked_from: UUID | None = None
    """The session whose checkpoint ``restored_from_checkpoint`` this one was forked from."""
    tokens_used: int = 0
    cost_usd: float = 0.0
    options: SessionOptions = field(default_factory=SessionOptions)
    review_round: int = 0
    """Verifications that failed and sent the session back to work."""
    worktree: WorktreeBinding | None = None
    """Where its agents work (set once, when it first runs)."""
    checkpoint_checked_at: datetime | None = None
    """When the engine last found its periodic checkpoint due with nothing new to record
    (set by the engine alone): the next one counts from then."""

    def evolve(self, **changes: Any) -> Session:
        return dataclasses.replace(self, **changes)

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)

    @property
    def continues(self) -> UUID | None:
        """The session whose files and finished tasks this one starts from (at
        ``restored_from_checkpoint``): the one it retries or was forked from."""
        return self.retry_of or self.forked_from

    @property
    def holds_running_slot(self) -> bool:
        return self.status in RUNNING_STATES

    @property
    def duration_seconds(self) -> float | None:
        """Wall time from first start to finish; None until the session has both."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def session_fields(session: Session) -> dict[str, Any]:
    """The session as plain values, one per field and named after it (enums as their
    values, the options as the dict ``SessionOptions.to_json`` gives, ids and times as
    they are), its working tree flattened as the row and the API have it: ``worktree``
    (the path), ``branch`` and ``base_commit``, all None when it has none. The one mapping
    the database row and the API's schema are made from, so a field added to ``Session``
    reaches both."""
    tree = session.worktree
    return {
        "id": session.id,
        "title": session.title,
        "initial_prompt": session.initial_prompt,
        "priority": session.priority.value,
        "status": session.status.value,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "version": session.version,
        "transition_seq": session.transition_seq,
        "phase": session.phase.value if session.phase is not None else None,
        "workspace": session.workspace,
        "metadata": session.metadata,
        "status_reason": session.status_reason,
        "started_at": session.started_at,
        "finished_at": session.finished_at,
        "retry_of": session.retry_of,
        "attempt": session.attempt,
        "restored_from_checkpoint": session.restored_from_checkpoint,
        "forked_from": session.forked_from,
        "tokens_used": session.tokens_used,
        "cost_usd": session.cost_usd,
        "options": session.options.to_json(),
        "review_round": session.review_round,
        "worktree": tree.path if tree is not None else None,
        "branch": tree.branch if tree is not None else None,
        "base_commit": tree.base_commit if tree is not None else None,
        "checkpoint_checked_at": session.checkpoint_checked_at,
    }


def session_from_fields(fields: Mapping[str, Any]) -> Session:
    """``session_fields`` read back, from a row or from JSON: ids and times may come as
    text, and a time without a zone is UTC (SQLite gives them back so)."""
    return Session(
        id=identifier(fields["id"]),
        title=fields["title"],
        initial_prompt=fields["initial_prompt"],
        priority=Priority(fields["priority"]),
        status=SessionState(fields["status"]),
        created_at=required_moment(fields["created_at"]),
        updated_at=required_moment(fields["updated_at"]),
        version=int(fields["version"]),
        transition_seq=int(fields["transition_seq"]),
        phase=SessionPhase(fields["phase"]) if fields["phase"] else None,
        workspace=fields["workspace"],
        metadata=dict(fields["metadata"] or {}),
        status_reason=fields["status_reason"],
        started_at=moment(fields["started_at"]),
        finished_at=moment(fields["finished_at"]),
        retry_of=optional_identifier(fields["retry_of"]),
        attempt=int(fields["attempt"]),
        restored_from_checkpoint=optional_identifier(fields["restored_from_checkpoint"]),
        forked_from=optional_identifier(fields["forked_from"]),
        tokens_used=int(fields["tokens_used"]),
        cost_usd=float(fields["cost_usd"]),
        options=SessionOptions.from_json(fields["options"]),
        review_round=int(fields["review_round"]),
        worktree=(
            WorktreeBinding(fields["worktree"], fields["branch"] or "", fields["base_commit"] or "")
            if fields["worktree"]
            else None
        ),
        checkpoint_checked_at=moment(fields["checkpoint_checked_at"]),
    )


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of a session's append-only history; ``seq`` is gap-free per session."""

    session_id: UUID
    seq: int
    from_state: SessionState | None
    to_state: SessionState
    reason: str | None
    actor: Actor
    at: datetime


def creation_record(session: Session, actor: Actor) -> Transition:
    """The first history row of a new session (seq 1, from nothing to its initial state)."""
    return Transition(
        session_id=session.id,
        seq=session.transition_seq,
        from_state=None,
        to_state=session.status,
        reason="created",
        actor=actor,
        at=session.created_at,
    )


def running_seconds(history: Sequence[Transition], now: datetime) -> float:
    """Time spent RUNNING (or DEGRADED) according to the history (in ``seq`` order): the
    clock a session's timeout is measured on; pauses and queueing do not count."""
    total = 0.0
    since: datetime | None = None
    for record in history:
        if since is not None:
            total += (record.at - since).total_seconds()
            since = None
        if record.to_state in RUNNING_STATES:
            since = record.at
    if since is not None:
        total += (now - since).total_seconds()
    return total


def running_at_most(session: Session, now: datetime) -> float | None:
    """An upper bound of the session's running time that needs no history: the time
    since it first started (pauses and queueing only take from it); None before it
    started. While it is within a limit, so is the running time, and the history (a
    read per step) is not needed to tell."""
    if session.started_at is None:
        return None
    return max(0.0, (now - session.started_at).total_seconds())


def transition(
    session: Session,
    target: SessionState,
    *,
    now: datetime,
    actor: Actor,
    reason: str | None = None,
) -> tuple[Session, Transition]:
    """Move ``session`` to ``target`` or raise ``IllegalTransition``.

    Returns the new session (version and sequence advanced) and its history row.
    """
    if not can_transition(session.status, target):
        raise illegal(session, target)
    phase = session.phase
    if target == SessionState.RUNNING and session.status in (
        SessionState.PENDING,
        SessionState.QUEUED,
    ):
        phase = SessionPhase.PLANNING
    elif is_terminal(target):
        phase = None
    seq = session.transition_seq + 1
    moved = session.evolve(
        status=target,
        phase=phase,
        version=session.version + 1,
        transition_seq=seq,
        updated_at=now,
        status_reason=reason,
        started_at=session.started_at or (now if target in RUNNING_STATES else None),
        finished_at=now if is_terminal(target) else None,
    )
    record = Transition(session.id, seq, session.status, target, reason, actor, now)
    return moved, record


def illegal(session: Session, target: SessionState, action: str | None = None) -> IllegalTransition:
    allowed = [s.value for s in allowed_targets(session.status)]
    verb = f"'{action}' " if action else ""
    return IllegalTransition(
        f"Cannot {verb}session {session.id}: {session.status.value} -> {target.value} is not "
        f"allowed (allowed from {session.status.value}: {', '.join(allowed) or 'none'})",
        {
            "current_state": session.status.value,
            "requested_state": target.value,
            "allowed_states": allowed,
            **({"action": action} if action else {}),
        },
    )
