"""Live event streams over WebSocket (user guide §7).

A stream is the database log read from a cursor: first everything stored after
``since``, then the live events that the process's event feed offers. The cursor is the
per-session ``seq`` on ``/ws/sessions/{id}`` and the global ``id`` on ``/ws`` and
``/ws/sessions``. A session's ``seq`` grows in commit order; the log is read by ``id``
only up to where every id is settled (one still being committed holds the larger ones
back), so the boundary between history and live events has no gap and no duplicate,
and a client that reconnects with the last cursor it saw misses nothing.

Protocol, client to server: ``{"since": n}`` rewinds (or skips) the stream to ``n``;
``{"type": "ping"}`` is answered with ``{"type": "pong"}``. Server to client: events, a
``{"type": "ping"}`` after ``WS_HEARTBEAT_SECONDS`` of silence, ``{"type": "error"}`` for
a message it cannot read. Close codes: 4400 a malformed id or cursor (``api.errors``);
4401 no operator token and 4403 a page of another origin (``api.operator_auth``); 4404
unknown session; 4008 the client accepted no data for ``WS_SEND_TIMEOUT_SECONDS``
(reconnect with ``since``); 1011 the database is unavailable (reconnect with ``since``).

A client that reads more slowly than events arrive is not cut off: once more than
``WS_QUEUE_SIZE`` events wait for it, it is served from the log instead, at its own pace.
Only a client that stops reading altogether is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from ...bootstrap import Components
from ...domain.errors import OrchestratorError
from ...domain.events import Event
from ...services.event_feed import EventFeed, Nudge, Subscription
from ..metrics import Metrics
from ..paths import MAX_CURSOR
from ..schemas.events import wire_text

log = structlog.get_logger("industrial_orchestrator.api.streams")

router = APIRouter(tags=["streams"])

BATCH = 500
CLOSE_UNKNOWN_SESSION = 4404
CLOSE_TOO_SLOW = 4008
CLOSE_UNAVAILABLE = 1011
CLOSE_TOO_BIG = 1009
MAX_CONTROL_BYTES = 1024
"""A client's messages are pings and rewinds, a few dozen bytes; anything far bigger is
not a client of ours, and is not parsed."""
CLOSE_WAIT_SECONDS = 30.0
PING = '{"type":"ping"}'
PONG = '{"type":"pong"}'

Since = Annotated[int | None, Query(ge=0, le=MAX_CURSOR)]


@dataclass(frozen=True, slots=True)
class Scope:
    """What one kind of stream shows, and how its cursor reads the log."""

    name: str
    accepts: Callable[[Event], bool]
    cursor_of: Callable[[Event], int]
    history: Callable[[int, int], Awaitable[list[Event]]]
    now: Callable[[], Awaitable[int]]


@router.websocket("/ws")
async def everything(websocket: WebSocket, since: Since = None) -> None:
    """Every event of the log; ``since`` is a global event ``id`` (default: from now)."""
    events = _components(websocket).events
    scope = Scope(
        name="all",
        accepts=lambda _: True,
        cursor_of=lambda event: event.id,
        history=lambda after, limit: events.after(after, limit=limit),
        now=events.last_id,
    )
    await _serve(websocket, scope, since)


@router.websocket("/ws/sessions")
async def all_sessions(websocket: WebSocket, since: Since = None) -> None:
    """Every session event; ``since`` is a global event ``id`` (default: from now)."""
    events = _components(websocket).events
    scope = Scope(
        name="sessions",
        accepts=lambda event: event.session_id is not None,
        cursor_of=lambda event: event.id,
        history=lambda after, limit: events.after(after, limit=limit, sessions_only=True),
        now=events.last_id,
    )
    await _serve(websocket, scope, since)


@router.websocket("/ws/sessions/{session_id}")
async def one_session(websocket: WebSocket, session_id: UUID, since: Since = None) -> None:
    """Every event of one session after ``since`` (its ``seq``; default 0: the whole
    history), then live ones."""
    events = _components(websocket).events

    async def start() -> int:
        return 0

    scope = Scope(
        name="session",
        accepts=lambda event: event.session_id == session_id,
        cursor_of=lambda event: event.seq or 0,
        history=lambda after, limit: events.for_session(session_id, after_seq=after, limit=limit),
        now=start,
    )
    await websocket.accept()
    if not await events.exists(session_id):
        await websocket.close(
            code=CLOSE_UNKNOWN_SESSION, reason=f"session {session_id} does not exist"
        )
        return
    await _serve(websocket, scope, since)


def _components(websocket: WebSocket) -> Components:
    components: Components = websocket.app.state.components
    return components


class Stalled(Exception):
    """The client accepted no data for the send timeout."""


class Oversized(Exception):
    """The client sent a message bigger than ``MAX_CONTROL_BYTES``."""


class _Stream:
    """One connection: a sender (history, then live events) and a receiver (control
    messages), sharing the cursor of the last event sent."""

    def __init__(
        self,
        websocket: WebSocket,
        scope: Scope,
        subscription: Subscription[str],
        cursor: int,
        *,
        heartbeat: float,
        send_timeout: float,
    ) -> None:
        self.websocket = websocket
        self.scope = scope
        self.subscription = subscription
        self.cursor = cursor
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.rewind: int | None = None

    async def send(self) -> None:
        while True:
            if self.rewind is not None:
                self.cursor, self.rewind = self.rewind, None
            if self.subscription.lagging:
                self.subscription.rearm()  # before reading the log: nothing falls between
            await self._catch_up()
            await self._follow()

    async def _catch_up(self) -> None:
        while True:
            # Shielded: a read cancelled halfway would leave its pooled connection to be
            # reset mid-query; let it finish and drop the result instead.
            page = await asyncio.shield(self.scope.history(self.cursor, BATCH))
            for event in page:
                await self._deliver(wire_text(event))
                self.cursor = self.scope.cursor_of(event)
            if len(page) < BATCH:
                return

    async def _follow(self) -> None:
        """Send live events until a rewind, or a full queue, sends us back to the log."""
        while self.rewind is None and not self.subscription.lagging:
            item = await self.subscription.next(self.heartbeat)
            if item is None:
                await self._deliver(PING)
            elif isinstance(item, Nudge):
                continue
            elif (position := self.scope.cursor_of(item.event)) > self.cursor:
                await self._deliver(item.rendered)
                self.cursor = position

    async def _deliver(self, text: str) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.websocket.send_text(text)
        except TimeoutError:
            raise Stalled from None

    async def receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") or message.get("bytes") or ""
            if len(raw) > MAX_CONTROL_BYTES:
                raise Oversized
            reply = self._control(raw)
            if reply is not None:
                await self.websocket.send_text(reply)

    def _control(self, raw: str | bytes) -> str | None:
        try:
            message: Any = json.loads(raw)
        except ValueError:
            return _error("messages must be JSON objects")
        if not isinstance(message, dict):
            return _error("messages must be JSON objects")
        if message.get("type") == "ping":
            return PONG
        since = message.get("since")
        if "since" in message and isinstance(since, int) and 0 <= since <= MAX_CURSOR:
            self.rewind = since
            self.subscription.nudge()
            return None
        return _error('send {"since": <non-negative integer>} or {"type": "ping"}')


async def _serve(websocket: WebSocket, scope: Scope, since: int | None) -> None:
    components = _components(websocket)
    feed: EventFeed[str] = websocket.app.state.feed
    metrics: Metrics = websocket.app.state.metrics
    settings = components.settings
    # Subscribed, and "now" read, before the handshake completes: an event committed
    # after the client sees the connection open is always delivered.
    subscription = feed.subscribe(scope.accepts, capacity=settings.ws_queue_size)
    gauge = metrics.ws_connections.labels(stream=scope.name)
    gauge.inc()
    try:
        start = since if since is not None else await scope.now()
        if websocket.client_state == WebSocketState.CONNECTING:
            await websocket.accept()
        stream = _Stream(
            websocket,
            scope,
            subscription,
            start,
            heartbeat=settings.ws_heartbeat_seconds,
            send_timeout=settings.ws_send_timeout_seconds,
        )
        close = await _run(stream, metrics)
    except OrchestratorError as exc:
        close = (CLOSE_UNAVAILABLE, exc.message)
    finally:
        feed.unsubscribe(subscription)
        gauge.dec()
    if close is not None:
        # The close frame queues behind whatever a stalled client has not read; do not
        # wait for it forever (the server's keepalive ends such a connection).
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await websocket.close(code=close[0], reason=close[1][:120])


async def _run(stream: _Stream, metrics: Metrics) -> tuple[int, str] | None:
    """Run until the client leaves (None) or the stream must close: (code, reason)."""
    sender = asyncio.create_task(stream.send())
    receiver = asyncio.create_task(stream.receive())
    tasks = {sender, receiver}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # Not gather(): a cancelled gather turns our own cancellation into its children's.
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not report it as lost
    failed = next((task for task in done if task.exception()), None)
    error = failed.exception() if failed is not None else None
    if error is None or isinstance(error, WebSocketDisconnect):
        return None
    if isinstance(error, Stalled):
        metrics.ws_slow_clients.labels(stream=stream.scope.name).inc()
        log.warning("ws_client_stalled", stream=stream.scope.name, cursor=stream.cursor)
        return CLOSE_TOO_SLOW, f"too slow: reconnect with since={stream.cursor}"
    if isinstance(error, Oversized):
        return CLOSE_TOO_BIG, f"messages are at most {MAX_CONTROL_BYTES} bytes"
    if isinstance(error, OrchestratorError):
        return CLOSE_UNAVAILABLE, f"{error.message}; reconnect with since={stream.cursor}"
    log.error("ws_stream_failed", stream=stream.scope.name, exc_info=error)
    return CLOSE_UNAVAILABLE, f"internal error; reconnect with since={stream.cursor}"


def _error(message: str) -> str:
    return json.dumps({"type": "error", "message": message})
