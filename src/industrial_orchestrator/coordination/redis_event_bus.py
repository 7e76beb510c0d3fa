"""Cross-replica wake-ups through Redis pub/sub.

Each replica keeps its local bus for its own WebSocket readers and relays every local
publication to a Redis channel; a listener task feeds what other replicas publish into
the local bus. Redis carries only "session X has news", never the events themselves, so
when Redis is down or a message is lost, readers are merely woken later by their
periodic re-read of the database log: slower, never wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .event_bus import LocalEventBus

log = structlog.get_logger(__name__)

_GLOBAL = "*"
_RECONNECT_SECONDS = 1.0


class RedisEventBus:
    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._local = LocalEventBus()
        self._origin = uuid.uuid4().hex
        self._listener: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="redis-event-bus")

    async def close(self) -> None:
        tasks = [*self._sends, *([self._listener] if self._listener else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await task
        await self._redis.aclose()

    def publish(self, session_id: UUID | None) -> None:
        self._local.publish(session_id)
        message = f"{self._origin} {session_id or _GLOBAL}"
        task = asyncio.create_task(self._send(message))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[UUID | None]]:
        async with self._local.subscribe() as queue:
            yield queue

    async def _send(self, message: str) -> None:
        try:
            await self._redis.publish(self._channel, message)
        except (RedisError, OSError) as exc:
            log.warning("event_bus_publish_failed", error=type(exc).__name__)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._relay(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("event_bus_listener_lost", error=type(exc).__name__)
                await asyncio.sleep(_RECONNECT_SECONDS)

    def _relay(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        origin, _, target = text.partition(" ")
        if origin == self._origin:
            return  # our own readers were woken when we published
        try:
            self._local.publish(None if target == _GLOBAL else UUID(target))
        except ValueError:
            log.warning("event_bus_bad_message", message=text[:100])
