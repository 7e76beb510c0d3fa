"""Conversions between database rows and domain objects, shared by the repositories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from ..domain.plain_values import moment, required_moment
from ..domain.sessions.checkpoint import Checkpoint
from ..domain.sessions.session import (
    Actor,
    Session,
    Transition,
    session_fields,
    session_from_fields,
)
from ..domain.sessions.states import SessionState

# SQLite hands back naive datetimes; everything we store is UTC (the domain's reading of
# a time, for the repositories' rows).
utc = moment


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


# Columns of a session's row ``add`` and ``save`` never write: its working tree
# (``bind_worktree`` writes it once) and the engine's checkpoint clock
# (``checkpoint_checked``).
_WRITTEN_APART = ("worktree", "branch", "base_commit", "checkpoint_checked_at")


def session_values(session: Session) -> dict[str, Any]:
    """The columns ``add`` and ``save`` write: the session's fields (``session_fields``)
    but those written apart, and the row's own: the priority's rank (the queue's order)
    and the duration (the stats' average)."""
    values = session_fields(session)
    for column in _WRITTEN_APART:
        del values[column]
    values["priority_rank"] = session.priority.rank
    values["duration_seconds"] = session.duration_seconds
    return values


def session_from_row(row: Mapping[Any, Any]) -> Session:
    # The columns are the session's fields (its working tree flattened alike).
    return session_from_fields(row)


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


def transition_from_row(row: Mapping[Any, Any]) -> Transition:
    return Transition(
        session_id=row["session_id"],
        seq=row["seq"],
        from_state=SessionState(row["from_state"]) if row["from_state"] else None,
        to_state=SessionState(row["to_state"]),
        reason=row["reason"],
        actor=Actor(row["actor"]),
        at=required_moment(row["at"]),
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


def checkpoint_from_row(row: Mapping[Any, Any]) -> Checkpoint:
    return Checkpoint(
        id=row["id"],
        session_id=row["session_id"],
        seq=row["seq"],
        label=row["label"],
        reason=row["reason"],
        data=dict(row["data"] or {}),
        created_at=required_moment(row["created_at"]),
    )


def prefixed(columns: Iterable[sa.ColumnElement[Any]], prefix: str) -> list[sa.Label[Any]]:
    """A joined row's columns under ``prefix``: read beside another table's, whose names
    they would otherwise take."""
    return [column.label(f"{prefix}{column.key}") for column in columns]


def unprefixed(row: Mapping[Any, Any], prefix: str, key: str) -> dict[str, Any] | None:
    """``prefixed``'s columns of ``row`` under their own names; None when the outer join
    found no row (its ``key`` column is NULL)."""
    if row[prefix + key] is None:
        return None
    cut = len(prefix)
    return {name[cut:]: value for name, value in row.items() if name.startswith(prefix)}
