"""Wakes event readers when something was appended to the log.

The bus carries no events, only "the log has news": readers then read the database log
from where they stopped. A lost or late wake-up therefore delays delivery but never
loses an event; readers also re-read on a timer. This is the in-process implementation;
the Redis one (cross-replica) implements the same interface.

A wake-up also names the sessions the news calls to step (``domain.sessions.stepping``),
when its publisher said: the runtime's runner then looks at the log only when one of them
may be its own. A name is a hint, never the news itself: the log stays what is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Set
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol
from uuid import UUID


class Wakeup:
    """A reader's doorbell: rung by the bus, answered by reading the log."""

    def __init__(self, *, keeps_steps: bool = False) -> None:
        self._rung = asyncio.Event()
        self._keeps_steps = keeps_steps
        self._steps: set[UUID] | None = set() if keeps_steps else None

    def ring(self, steps: Set[UUID] | None = None) -> None:
        """``steps``: the sessions the news calls to step; None: not said."""
        if steps is None:
            self._steps = None
        elif self._steps is not None:
            self._steps.update(steps)
        self._rung.set()

    def take_steps(self) -> set[UUID] | None:
        """The sessions the rings since the last call named (for a doorbell that keeps
        them); None when one did not say (anything may need a look)."""
        steps = self._steps
        self._steps = set() if self._keeps_steps else None
        return steps

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

    def publish(self, *, work: bool = False, steps: Set[UUID] | None = None) -> None:
        """Announce that events were committed; ``work``: events that may have made a
        task claimable (``domain.work_news``); ``steps``: the sessions they call to step
        (``domain.sessions.stepping.steps_called_by``), None when not said."""

    def subscribe(
        self, *, work_only: bool = False, keeps_steps: bool = False
    ) -> AbstractAsyncContextManager[Wakeup]:
        """A doorbell rung by every publication, or by those with ``work`` only;
        ``keeps_steps``: it gathers the sessions they name (``Wakeup.take_steps``)."""


class LocalEventBus:
    """One process's bus: the default, and the local half of the Redis one."""

    def __init__(self) -> None:
        self._subscribers: set[Wakeup] = set()
        self._waiting_for_work: set[Wakeup] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def publish(self, *, work: bool = False, steps: Set[UUID] | None = None) -> None:
        for wakeup in self._subscribers:
            wakeup.ring(steps)
        if work:
            for wakeup in self._waiting_for_work:
                wakeup.ring()

    @asynccontextmanager
    async def subscribe(
        self, *, work_only: bool = False, keeps_steps: bool = False
    ) -> AsyncIterator[Wakeup]:
        wakeup = Wakeup(keeps_steps=keeps_steps)
        subscribers = self._waiting_for_work if work_only else self._subscribers
        subscribers.add(wakeup)
        try:
            yield wakeup
        finally:
            subscribers.discard(wakeup)
