"""Live event streams over WebSocket (user guide §7).

A stream is the database log read from a cursor: first everything stored after
``since``, then, woken by the event bus, whatever is appended next. Because every read
goes to the log, the boundary between history and live events has no gap and no
duplicate, and a client that reconnects with its last ``seq`` misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from ...bootstrap import Components
from ..schemas.events import EventRead

router = APIRouter(tags=["streams"])

BATCH = 500
CLOSE_UNKNOWN_SESSION = 4404


@router.websocket("/ws/sessions/{session_id}")
async def session_stream(
    websocket: WebSocket,
    session_id: UUID,
    since: Annotated[int, Query(ge=0)] = 0,
) -> None:
    """Every event of one session after ``since`` (its ``seq``), then live ones. Sends
    ``{"type": "ping"}`` after ``WS_HEARTBEAT_SECONDS`` (15) of silence."""
    components: Components = websocket.app.state.components
    await websocket.accept()
    if not await components.events.exists(session_id):
        await websocket.close(
            code=CLOSE_UNKNOWN_SESSION, reason=f"session {session_id} does not exist"
        )
        return
    async with components.bus.subscribe() as wakeups:
        sender = asyncio.create_task(_send(websocket, components, session_id, since, wakeups))
        receiver = asyncio.create_task(_until_disconnect(websocket))
        done, pending = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
        for task in done:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                task.result()


async def _send(
    websocket: WebSocket,
    components: Components,
    session_id: UUID,
    cursor: int,
    wakeups: asyncio.Queue[UUID | None],
) -> None:
    while True:
        batch = await components.events.for_session(session_id, after_seq=cursor, limit=BATCH)
        for event in batch:
            await websocket.send_json(EventRead.of(event).model_dump(mode="json"))
            cursor = event.seq or cursor
        if len(batch) == BATCH:
            continue
        try:
            async with asyncio.timeout(components.settings.ws_heartbeat_seconds):
                await _news_for(wakeups, session_id)
        except TimeoutError:
            await websocket.send_json({"type": "ping"})


async def _news_for(wakeups: asyncio.Queue[UUID | None], session_id: UUID) -> None:
    """Return once the bus announces news for ``session_id``."""
    while await wakeups.get() != session_id:
        pass


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
