"""Cross-replica wake-ups through Redis pub/sub.

Each replica keeps its local bus for its own WebSocket readers and relays every local
publication to a Redis channel; a listener task feeds what other replicas publish into
the local bus. Redis carries only "replica R committed events" (whether they may offer
work, a ``+work`` suffix; the sessions they call to step, after a ``/``), never the
events, so when Redis is down or a message is lost, readers are merely woken later by
their periodic re-read of the database log: slower, never wrong. A message without the
``/`` (an older replica's, or one that would name too many) names nothing: a look.

A replica sends at most one message per ``GATHER_SECONDS``: the first publication after a
quiet spell goes out at once, and what is published within the window after a message
goes out together at its end. Under load this halves the messages every replica sends
and every replica (the sender too: pub/sub has no "not to myself") parses, for at most
that much delay to the other replicas' readers; this replica's own ring at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Set
from contextlib import asynccontextmanager

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .event_bus import LocalEventBus, Wakeup

log = structlog.get_logger(__name__)

_RECONNECT_SECONDS = 1.0
_CLOSE_SECONDS = 5.0
_WORK = "+work"
_STEPS = "/"
# Sessions one message names at most (33 bytes each); more, and it names none: a look
# (a replica would hold one of so many anyway).
MAX_NAMED = 64
GATHER_SECONDS = 0.01


class RedisEventBus:
    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._local = LocalEventBus()
        self._origin = uuid.uuid4().hex
        self._listener: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._send_queued = False
        self._work_queued = False
        self._steps_queued: set[uuid.UUID] | None = set()
        self._last_sent = float("-inf")  # the event loop's clock

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="redis-event-bus")

    async def close(self) -> None:
        tasks = [*self._sends, *([self._listener] if self._listener else [])]
        for task in tasks:
            task.cancel()
        # Bounded: a pub/sub connection cancelled mid-read has been seen to never finish
        # closing, and a shutdown must not hang on it.
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=_CLOSE_SECONDS)
            if stuck:
                log.warning("event_bus_close_stuck", tasks=len(stuck))
        try:
            await asyncio.wait_for(asyncio.shield(self._redis.aclose()), _CLOSE_SECONDS)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("event_bus_close_failed", error=type(exc).__name__)

    def publish(self, *, work: bool = False, steps: Set[uuid.UUID] | None = None) -> None:
        self._local.publish(work=work, steps=steps)
        self._work_queued |= work
        if steps is None:
            self._steps_queued = None
        elif self._steps_queued is not None:
            self._steps_queued.update(steps)
            if len(self._steps_queued) > MAX_NAMED:
                self._steps_queued = None
        if self._send_queued:
            return  # a message not yet sent already tells the others to read
        self._send_queued = True
        task = asyncio.create_task(self._send())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    @asynccontextmanager
    async def subscribe(
        self, *, work_only: bool = False, keeps_steps: bool = False
    ) -> AsyncIterator[Wakeup]:
        async with self._local.subscribe(work_only=work_only, keeps_steps=keeps_steps) as wakeup:
            yield wakeup

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_sent + GATHER_SECONDS - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        # What was published until now, in one message.
        message = self._origin + (_WORK if self._work_queued else "")
        if self._steps_queued is not None:
            message += _STEPS + ",".join(sorted(s.hex for s in self._steps_queued))
        self._send_queued = False
        self._work_queued = False
        self._steps_queued = set()
        self._last_sent = loop.time()
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
        message = data.decode(errors="replace") if isinstance(data, bytes) else data
        head, named, names = message.partition(_STEPS)
        origin = head.removesuffix(_WORK)
        if origin != self._origin:  # our own readers were woken when we published
            self._local.publish(work=origin != head, steps=_sessions(names) if named else None)


def _sessions(names: str) -> set[uuid.UUID] | None:
    """The sessions a message names; None (a look) for a name that is not a session's."""
    try:
        return {uuid.UUID(hex=name) for name in names.split(",") if name}
    except ValueError:
        return None
