"""The event feed reads the log only for subscribers: with none, news costs no read, and
a subscriber that comes later still gets every event committed after it subscribed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from industrial_orchestrator.coordination.event_bus import LocalEventBus
from industrial_orchestrator.domain.events import Event, EventType
from industrial_orchestrator.services.event_feed import Delivery, EventFeed

pytestmark = pytest.mark.fast

POLL = 0.2
NOW = datetime(2026, 12, 5, tzinfo=UTC)


class FakeLog:
    """The log as the feed reads it, counting the reads."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.pages = 0
        self.ends = 0

    def commit(self, bus: LocalEventBus) -> Event:
        event = Event(len(self.events) + 1, EventType.SESSION_LOG, NOW, None, None, {})
        self.events.append(event)
        bus.publish()
        return event

    async def after(
        self, after_id: int, *, limit: int, wait_for_writers: bool = True, **_: Any
    ) -> list[Event]:
        assert not wait_for_writers
        self.pages += 1
        return [event for event in self.events if event.id > after_id][:limit]

    async def last_id(self, *, wait_for_writers: bool = True) -> int:
        assert not wait_for_writers  # the feed is rung again when a writer commits
        self.ends += 1
        return self.events[-1].id if self.events else 0


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


async def test_news_without_subscribers_is_not_read_and_a_late_subscriber_misses_nothing():
    bus, log = LocalEventBus(), FakeLog()
    feed = _feed(log, bus)
    await feed.start()
    try:
        for _ in range(20):
            log.commit(bus)
            await asyncio.sleep(0.005)
        # Nobody listens: no page read, only a look at the end of the log now and then.
        await eventually(lambda: feed.position == 20)
        assert log.pages == 0
        assert log.ends <= 3

        subscription = feed.subscribe(lambda event: True, capacity=100)
        committed = [log.commit(bus).id for _ in range(3)]
        received: list[int] = []
        while len(received) < 3:
            item = await subscription.next(5)
            assert isinstance(item, Delivery)
            received.append(item.rendered)
        assert received == committed
        assert log.pages >= 1
    finally:
        await feed.close()


async def test_the_place_does_not_move_past_what_a_subscriber_made_during_the_look_needs():
    bus, log = LocalEventBus(), FakeLog()
    feed = _feed(log, bus)
    log.commit(bus)
    subscription = None
    ends = log.last_id

    async def subscribed_during_the_look(*, wait_for_writers: bool = True) -> int:
        nonlocal subscription
        last = await ends(wait_for_writers=wait_for_writers)
        if subscription is None and log.ends > 1:  # the feed's own look, not start()'s
            subscription = feed.subscribe(lambda event: True, capacity=100)
            log.commit(bus)  # committed after it subscribed, before the look "returned"
            last = log.events[-1].id
        return last

    log.last_id = subscribed_during_the_look  # type: ignore[method-assign]
    await feed.start()
    try:
        await eventually(lambda: subscription is not None)
        assert subscription is not None
        item = await subscription.next(5)
        assert isinstance(item, Delivery)
        assert item.rendered == 2
    finally:
        await feed.close()


def _feed(log: FakeLog, bus: LocalEventBus) -> EventFeed[int]:
    """A feed of ``log``'s events, each rendered as its id."""
    return EventFeed(
        log,  # type: ignore[arg-type]
        bus,
        render=lambda event: event.id,
        poll_seconds=POLL,
    )
