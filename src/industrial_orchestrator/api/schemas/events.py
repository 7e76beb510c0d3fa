"""Event log resource and log-line appends."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from ...domain.errors import PayloadTooLarge
from ...domain.events import Event, EventType, LogStream
from .common import StrictModel

MAX_LOG_REQUEST_BYTES = 256 * 1024


class EventRead(BaseModel):
    id: int = Field(description="Global id, increasing")
    session_id: UUID | None
    seq: int | None = Field(description="Per-session sequence number: 1, 2, 3... no gap")
    type: EventType
    at: datetime
    payload: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventRead:
        return cls(
            id=event.id,
            session_id=event.session_id,
            seq=event.seq,
            type=event.type,
            at=event.at,
            payload=event.payload,
        )


def wire_text(event: Event) -> str:
    """An event as a WebSocket text frame: the same JSON as the REST view."""
    return EventRead.of(event).model_dump_json()


class EventPage(BaseModel):
    items: list[EventRead]
    next_since: int = Field(
        description="Pass as `since` to get the events after this page (unchanged if empty)"
    )


class _LogText(StrictModel):
    text: str = Field(
        min_length=1,
        max_length=MAX_LOG_REQUEST_BYTES,
        description="Up to 256 KiB; split into several session.log events if long",
    )


class LogAppend(_LogText):
    stream: LogStream = Field(description="stdout, stderr, agent, tool or system")


class AgentLogAppend(_LogText):
    stream: Literal["stdout", "stderr", "agent", "tool"] = Field(
        description="stdout, stderr, agent or tool: the system stream is the orchestrator's "
        "own voice, which an agent cannot speak in"
    )


def check_log_size(text: str) -> None:
    """The limit is in bytes of UTF-8; the schema could only count characters."""
    size = len(text.encode("utf-8"))
    if size > MAX_LOG_REQUEST_BYTES:
        raise PayloadTooLarge(
            f"Log text is {size} bytes; the limit per request is {MAX_LOG_REQUEST_BYTES}",
            {"size": size, "limit": MAX_LOG_REQUEST_BYTES},
        )


class LogAppended(BaseModel):
    events: int = Field(description="How many session.log events the text became")
