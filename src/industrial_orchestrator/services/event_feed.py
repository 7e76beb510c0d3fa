"""One reader of the event log's tail per process, fanning new events out to streams.

A thousand WebSocket clients must not mean a thousand queries per event: the feed reads
each new page of the log once (woken by the event bus, or by its timer when a wake-up
was lost) and offers every event to the subscriptions whose filter accepts it. Offering
never waits: each subscription has a bounded queue, and one that is full falls back to
reading the log itself, so a slow client costs its own reads and never slows the others.

While nobody subscribes, the feed reads nothing on a wake-up: offering would reach
nobody. It only moves its place to the end of the log, at most once per poll, so that a
first subscriber's events are read from a recent place.

The feed only carries what is new. A stream catches up on history from the log itself,
after subscribing, and skips what it has already sent; the log is read by id only up to
where every id is settled (an id still being committed holds the larger ones back), and
per-session sequence numbers are in commit order, so that boundary has no gap and no
duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import structlog

from ..domain.errors import OrchestratorError
from ..domain.events import Event
from .events import EventLog

log = structlog.get_logger("industrial_orchestrator.services.event_feed")

PAGE = 500

R = TypeVar("R")


class Doorbell(Protocol):
    async def wait(self, within: float) -> bool: ...


class News(Protocol):
    """The event bus, as the feed sees it."""

    def subscribe(self) -> AbstractAsyncContextManager[Doorbell]: ...


@dataclass(frozen=True, slots=True)
class Delivery(Generic[R]):
    """An event and its rendering, made once for all subscribers."""

    event: Event
    rendered: R


class Nudge:
    """Put in a queue to wake its reader without an event."""


NUDGE = Nudge()


@dataclass(eq=False)
class Subscription(Generic[R]):
    """A stream's view of the feed: at most ``capacity`` events waiting to be sent.

    When the queue is full the subscription turns ``lagging``: it stops queueing and
    its owner reads the log from where it stopped, then ``rearm()``s it. So a burst
    bigger than the queue costs a read of the log, never an event, and memory stays
    bounded whatever the client's speed.
    """

    accepts: Callable[[Event], bool]
    capacity: int
    queue: asyncio.Queue[Delivery[R] | Nudge] = field(init=False)
    lagging: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        # One slot more than the capacity, so a nudge always fits.
        self.queue = asyncio.Queue(self.capacity + 1)

    def offer(self, delivery: Delivery[R]) -> None:
        if self.lagging or not self.accepts(delivery.event):
            return
        if self.queue.qsize() >= self.capacity:
            self.lagging = True
            self.nudge()
            return
        self.queue.put_nowait(delivery)

    def rearm(self) -> None:
        """Empty the queue and take new events again: the owner is about to read the
        log, which holds everything dropped."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.lagging = False

    def nudge(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(NUDGE)

    async def next(self, within: float) -> Delivery[R] | Nudge | None:
        """The next delivery or nudge; None after ``within`` seconds of nothing."""
        try:
            async with asyncio.timeout(within):
                return await self.queue.get()
        except TimeoutError:
            return None


class EventFeed(Generic[R]):
    def __init__(
        self,
        events: EventLog,
        news: News,
        *,
        render: Callable[[Event], R],
        poll_seconds: float,
    ) -> None:
        self._events = events
        self._news = news
        self._render = render
        self._poll_seconds = poll_seconds
        self._subscriptions: set[Subscription[R]] = set()
        self._subscribed = 0
        """How many subscriptions were ever made (to see one made during a read)."""
        self._task: asyncio.Task[None] | None = None
        self._exit = contextlib.AsyncExitStack()
        self.position = 0

    async def start(self) -> None:
        self._exit = contextlib.AsyncExitStack()
        # Subscribed before reading the position: nothing committed after it is missed.
        doorbell = await self._exit.enter_async_context(self._news.subscribe())
        self.position = await self._events.last_id(wait_for_writers=False)
        self._task = asyncio.create_task(self._run(doorbell), name="event-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._exit.aclose()

    def subscribe(self, accepts: Callable[[Event], bool], *, capacity: int) -> Subscription[R]:
        subscription: Subscription[R] = Subscription(accepts, capacity)
        self._subscriptions.add(subscription)
        self._subscribed += 1
        return subscription

    def unsubscribe(self, subscription: Subscription[R]) -> None:
        self._subscriptions.discard(subscription)

    async def _run(self, doorbell: Doorbell) -> None:
        clock = asyncio.get_running_loop().time
        skipped_at = clock()
        while True:
            await doorbell.wait(self._poll_seconds)
            try:
                if self._subscriptions:
                    await self._read_new()
                elif clock() - skipped_at >= self._poll_seconds:
                    skipped_at = clock()
                    await self._skip_to_end()
            except Exception:  # the feed must outlive any one bad page
                log.exception("event_feed_failed")

    async def _skip_to_end(self) -> None:
        """Move the place to the end of the log without reading the events, which nobody
        is there to be offered. Not if a subscription was made during the read: an
        event it needs may have committed after it and before the read."""
        subscribed = self._subscribed
        try:
            last = await self._events.last_id(wait_for_writers=False)
        except OrchestratorError as exc:
            log.warning("event_feed_read_failed", error=exc.message)
            return
        if subscribed == self._subscribed:
            self.position = max(self.position, last)

    async def _read_new(self) -> None:
        while True:
            try:
                # Never waits for a writer: its commit rings the doorbell again.
                page = await self._events.after(self.position, limit=PAGE, wait_for_writers=False)
            except OrchestratorError as exc:
                # The database is down: try again on the next wake-up or tick.
                log.warning("event_feed_read_failed", error=exc.message)
                return
            for event in page:
                delivery = Delivery(event, self._render(event))
                for subscription in self._subscriptions:
                    subscription.offer(delivery)
                self.position = event.id
            if len(page) < PAGE:
                return
