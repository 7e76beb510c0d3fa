"""Wakes event readers when something was appended to the log.

The bus carries no events, only "session X has news": readers then read the database
log from where they stopped. A lost or late wake-up therefore delays delivery but never
loses an event; readers also re-read on a timer. This is the in-process implementation;
the Redis one (cross-replica) implements the same interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Protocol
from uuid import UUID

# A subscriber that falls this far behind loses wake-ups, not events: it re-reads anyway.
QUEUE_SIZE = 256


class EventBus(Protocol):
    """What the API's streams and the services need of a bus."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def publish(self, session_id: UUID | None) -> None: ...

    def subscribe(self) -> AbstractAsyncContextManager[asyncio.Queue[UUID | None]]: ...


class LocalEventBus:
    """One process's bus: the default, and the local half of the Redis one."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[UUID | None]] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def publish(self, session_id: UUID | None) -> None:
        """Tell every subscriber that ``session_id`` (None: a global event) has news."""
        for queue in self._subscribers:
            # A full queue means the subscriber is awake already, with work queued.
            with suppress(asyncio.QueueFull):
                queue.put_nowait(session_id)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[UUID | None]]:
        queue: asyncio.Queue[UUID | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
