"""Session events: the append-only log that watchers read (user guide §3 C, §7).

Every state change becomes an event written in the same transaction as the change
(outbox), so an event exists if and only if its change committed. Events carry a
per-session sequence number, gap-free, so a reader can resume exactly where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from .sessions.checkpoint import Checkpoint
from .sessions.session import Session, Transition

# One event's payload, as JSON. Log text above this is split over several events.
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_LOG_TEXT_BYTES = MAX_PAYLOAD_BYTES - 1024  # room for the other fields


class EventType(StrEnum):
    SESSION_CREATED = "session.created"
    SESSION_TRANSITION = "session.transition"
    SESSION_PHASE = "session.phase"
    SESSION_LOG = "session.log"
    SESSION_TELEMETRY = "session.telemetry"
    SESSION_TAKEN_OVER = "session.taken_over"
    CHECKPOINT_CREATED = "checkpoint.created"
    TASK_CREATED = "task.created"
    TASK_TRANSITION = "task.transition"
    TASK_DECOMPOSED = "task.decomposed"
    TASK_DEPENDENCY_ADDED = "task.dependency_added"
    TASK_LEASED = "task.leased"
    TASK_ATTEMPT_ENDED = "task.attempt_ended"
    TASK_LOOP_STOPPED = "task.loop_stopped"
    TASK_HELD_UP = "task.held_up"
    CONTEXT_CREATED = "context.created"
    CONTEXT_UPDATED = "context.updated"
    CONTEXT_CONFLICT = "context.conflict"
    CONTEXT_RESOLVED = "context.resolved"
    AGENT_REGISTERED = "agent.registered"
    AGENT_DEREGISTERED = "agent.deregistered"
    AGENT_STATUS_CHANGED = "agent.status_changed"
    AGENT_TIER_CHANGED = "agent.tier_changed"


class LogStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    AGENT = "agent"
    TOOL = "tool"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event not yet stored: the database gives it its id and sequence number."""

    type: EventType
    at: datetime
    session_id: UUID | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: EventType
    at: datetime
    session_id: UUID | None
    seq: int | None
    payload: dict[str, Any]


def session_created(session: Session) -> NewEvent:
    return NewEvent(
        EventType.SESSION_CREATED,
        session.created_at,
        session.id,
        {
            "title": session.title,
            "priority": session.priority.value,
            "status": session.status.value,
            "retry_of": str(session.retry_of) if session.retry_of else None,
            "attempt": session.attempt,
        },
    )


def session_transition(record: Transition, session: Session) -> NewEvent:
    return NewEvent(
        EventType.SESSION_TRANSITION,
        record.at,
        record.session_id,
        {
            "from": record.from_state.value if record.from_state else None,
            "to": record.to_state.value,
            "reason": record.reason,
            "actor": record.actor.value,
            "transition_seq": record.seq,
            "version": session.version,
            "phase": session.phase.value if session.phase else None,
        },
    )


def checkpoint_created(checkpoint: Checkpoint) -> NewEvent:
    return NewEvent(
        EventType.CHECKPOINT_CREATED,
        checkpoint.created_at,
        checkpoint.session_id,
        {
            "checkpoint_id": str(checkpoint.id),
            "checkpoint_seq": checkpoint.seq,
            "label": checkpoint.label,
            "reason": checkpoint.reason,
        },
    )


def log_lines(session_id: UUID, stream: LogStream, text: str, at: datetime) -> list[NewEvent]:
    """One ``session.log`` event per chunk of at most ``MAX_LOG_TEXT_BYTES`` of UTF-8;
    long text is split (never truncated), at character boundaries."""
    chunks = split_utf8(text, MAX_LOG_TEXT_BYTES)
    return [
        NewEvent(
            EventType.SESSION_LOG,
            at,
            session_id,
            {"stream": stream.value, "text": chunk, "part": index, "parts": len(chunks)},
        )
        for index, chunk in enumerate(chunks, start=1)
    ]


def split_utf8(text: str, max_bytes: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_bytes`` UTF-8 bytes each, never inside a
    character; the pieces joined give back ``text``."""
    if max_bytes < 4:
        raise ValueError("max_bytes must hold at least one character (4 bytes)")
    encoded = text.encode("utf-8")
    pieces: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + max_bytes, len(encoded))
        # Step back off UTF-8 continuation bytes (0b10xxxxxx) to a character start.
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:
            end -= 1
        pieces.append(encoded[start:end].decode("utf-8"))
        start = end
    return pieces or [""]


def payload_size(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
