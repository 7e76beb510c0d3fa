"""REST view of the event log, and the log-append endpoint for producers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from ...domain.events import EventType
from ..dependencies import Events
from ..paths import API_PREFIX, MAX_CURSOR, SessionId
from ..schemas.common import error_responses
from ..schemas.events import EventPage, EventRead, LogAppend, LogAppended, check_log_size

router = APIRouter(prefix=API_PREFIX, tags=["events"])

Since = Annotated[
    int, Query(ge=0, le=MAX_CURSOR, description="Return only events after this point")
]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many events")]
EventTypes = Annotated[
    list[EventType] | None,
    Query(alias="type", description="Repeat to keep several event types"),
]


@router.get(
    "/sessions/{session_id}/events",
    response_model=EventPage,
    summary="A session's events",
    responses=error_responses(404, 422),
)
async def session_events(
    session_id: SessionId,
    events: Events,
    since: Since = 0,
    limit: Limit = 100,
    event_type: EventTypes = None,
) -> EventPage:
    """Events with `seq > since`, oldest first. Resume with `since=next_since`."""
    found = await events.for_session(
        session_id, after_seq=since, limit=limit, types=event_type or ()
    )
    last_seq = found[-1].seq if found else None
    return EventPage(
        items=[EventRead.of(e) for e in found],
        next_since=last_seq if last_seq is not None else since,
    )


@router.get(
    "/events",
    response_model=EventPage,
    summary="The whole event log",
    responses=error_responses(422),
)
async def all_events(
    events: Events,
    since: Since = 0,
    limit: Limit = 100,
    event_type: EventTypes = None,
    sessions_only: Annotated[
        bool, Query(description="Only events that belong to a session")
    ] = False,
) -> EventPage:
    """Events with `id > since`, in id order: an event that commits later never has
    a smaller id than one already returned, so `since=next_since` misses nothing."""
    found = await events.after(
        since, limit=limit, types=event_type or (), sessions_only=sessions_only
    )
    return EventPage(
        items=[EventRead.of(e) for e in found], next_since=found[-1].id if found else since
    )


@router.post(
    "/sessions/{session_id}/logs",
    status_code=status.HTTP_201_CREATED,
    response_model=LogAppended,
    summary="Append to a session's live terminal",
    responses=error_responses(404, 413, 422),
)
async def append_log(session_id: SessionId, body: LogAppend, events: Events) -> LogAppended:
    """For executors and agents: the text becomes `session.log` events (split into
    chunks of at most 15 KiB of UTF-8, never truncated)."""
    check_log_size(body.text)
    return LogAppended(events=await events.append_log(session_id, body.stream, body.text))
