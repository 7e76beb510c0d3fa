"""The event bus's two doorbells, in one process and across replicas through Redis: every
publication rings the log's readers; only those that may offer work ring the agents
waiting for a task."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from industrial_orchestrator.coordination.event_bus import LocalEventBus, Wakeup
from industrial_orchestrator.coordination.redis_event_bus import GATHER_SECONDS, RedisEventBus

from ..backends import REDIS_HOST

RUNG = 2.0  # long enough for a message through Redis
SILENT = 0.3


async def test_a_local_publication_rings_work_subscribers_only_when_it_offers_work() -> None:
    bus = LocalEventBus()
    async with bus.subscribe() as log, bus.subscribe(work_only=True) as work:
        bus.publish()
        assert await log.wait(SILENT)
        assert not await work.wait(SILENT)
        bus.publish(work=True)
        assert await log.wait(SILENT)
        assert await work.wait(SILENT)


async def test_across_replicas_the_work_flag_travels_with_the_wakeup(prefix: str) -> None:
    channel = f"{prefix}:events"
    one = RedisEventBus(Redis(host=REDIS_HOST, port=6379), channel)
    two = RedisEventBus(Redis(host=REDIS_HOST, port=6379), channel)
    await one.start()
    await two.start()
    try:
        async with two.subscribe() as log, two.subscribe(work_only=True) as work:
            await _until_subscribed(one, log)
            one.publish()
            assert await log.wait(RUNG)
            assert not await work.wait(SILENT)
            # Two publications before the message goes out: one message, with the flag.
            one.publish()
            one.publish(work=True)
            assert await work.wait(RUNG)
            assert await log.wait(SILENT)
    finally:
        await one.close()
        await two.close()


async def _until_subscribed(publisher: RedisEventBus, reader: Wakeup) -> None:
    """Publish until the other replica's listener hears (it subscribes in the background)."""
    for _ in range(50):
        publisher.publish()
        if await reader.wait(0.1):
            await asyncio.sleep(0.1)
            while await reader.wait(0.05):
                pass  # the rest of the warm-up's rings
            return
    raise AssertionError("the second replica never heard the first")


async def test_a_replica_gathers_a_burst_of_publications_into_few_messages(prefix: str) -> None:
    """Publications a millisecond apart for about 50 ms: one message per gathering window
    (not one each), the last of them sent too, and a work flag in the middle kept."""
    channel = f"{prefix}:events"
    listener = Redis(host=REDIS_HOST, port=6379)
    bus = RedisEventBus(Redis(host=REDIS_HOST, port=6379), channel)
    await bus.start()
    try:
        async with listener.pubsub() as pubsub:
            await pubsub.subscribe(channel)
            await pubsub.get_message(timeout=RUNG)  # the subscription's confirmation
            began = asyncio.get_running_loop().time()
            for n in range(50):
                bus.publish(work=n == 25)
                await asyncio.sleep(0.001)
            spread = asyncio.get_running_loop().time() - began
            messages: list[str] = []
            while (message := await pubsub.get_message(timeout=SILENT)) is not None:
                messages.append(message["data"].decode())
    finally:
        await bus.close()
        await listener.aclose()
    windows = spread / GATHER_SECONDS
    assert 2 <= len(messages) <= windows + 2, (len(messages), spread)
    assert sum(m.endswith("+work") for m in messages) == 1
