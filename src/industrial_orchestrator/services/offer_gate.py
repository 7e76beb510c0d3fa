"""The gate between the steps that make tasks READY and the dispatcher's offer of READY
tasks to its agents, in one process.

The dispatcher offers work to its agents one after the other, in order. A task a step
made READY in the middle of an offer would go to a later agent before an earlier one
saw it; so an offer waits for the openings under way and holds new ones back until it
ends. Openings do not wait for one another: steps of different sessions open side by
side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class OfferGate:
    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._opening = 0
        self._offering = False

    @asynccontextmanager
    async def opening(self) -> AsyncIterator[None]:
        """Held while a step makes tasks READY; any number at once, never during an offer."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._offering)
            self._opening += 1
        try:
            yield
        finally:
            async with self._changed:
                self._opening -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def offering(self) -> AsyncIterator[None]:
        """Held while READY tasks are offered to the agents in order; one at a time, once
        the openings under way are done. New openings wait from the moment it asks."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._offering)
            self._offering = True
            try:
                await self._changed.wait_for(lambda: self._opening == 0)
            except BaseException:  # cancelled while waiting: let the openings through
                self._offering = False
                self._changed.notify_all()
                raise
        try:
            yield
        finally:
            async with self._changed:
                self._offering = False
                self._changed.notify_all()
