"""Wakes event readers when something was appended to the log.

The bus carries no events, only "the log has news": readers then read the database log
from where they stopped. A lost or late wake-up therefore delays delivery but never
loses an event; readers also re-read on a timer. This is the in-process implementation;
the Redis one (cross-replica) implements the same interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class Wakeup:
    """A reader's doorbell: rung by the bus, answered by reading the log."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self, within: float) -> bool:
        """Whether the bell rang within ``within`` seconds. Returning clears it, so news
        that arrives while the reader reads rings again and is never slept through."""
        try:
            async with asyncio.timeout(within):
                await self._rung.wait()
        except TimeoutError:
            return False
        self._rung.clear()
        return True


class EventBus(Protocol):
    """What the event feed needs of a bus."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def publish(self, *, work: bool = False) -> None:
        """Announce that events were committed; ``work``: events that may have made a
        task claimable (``domain.work_news``)."""

    def subscribe(self, *, work_only: bool = False) -> AbstractAsyncContextManager[Wakeup]:
        """A doorbell rung by every publication, or by those with ``work`` only."""


class LocalEventBus:
    """One process's bus: the default, and the local half of the Redis one."""

    def __init__(self) -> None:
        self._subscribers: set[Wakeup] = set()
        self._waiting_for_work: set[Wakeup] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def publish(self, *, work: bool = False) -> None:
        for wakeup in self._subscribers:
            wakeup.ring()
        if work:
            for wakeup in self._waiting_for_work:
                wakeup.ring()

    @asynccontextmanager
    async def subscribe(self, *, work_only: bool = False) -> AsyncIterator[Wakeup]:
        wakeup = Wakeup()
        subscribers = self._waiting_for_work if work_only else self._subscribers
        subscribers.add(wakeup)
        try:
            yield wakeup
        finally:
            subscribers.discard(wakeup)
