"""The event bus's two doorbells, in one process and across replicas through Redis: every
publication rings the log's readers; only those that may offer work ring the agents
waiting for a task."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from redis.asyncio import Redis

from industrial_orchestrator.coordination.event_bus import LocalEventBus, Wakeup
from industrial_orchestrator.coordination.redis_event_bus import (
    GATHER_SECONDS,
    MAX_NAMED,
    RedisEventBus,
)

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


async def test_a_doorbell_that_keeps_steps_gathers_the_sessions_named_until_taken() -> None:
    bus = LocalEventBus()
    a, b = uuid4(), uuid4()
    async with bus.subscribe(keeps_steps=True) as runner, bus.subscribe() as feed:
        bus.publish(steps={a})
        bus.publish(steps=set())  # a lease, a log line: rung, naming nothing
        bus.publish(steps={b})
        assert await runner.wait(SILENT)
        assert runner.take_steps() == {a, b}
        assert runner.take_steps() == set()
        # News that does not say what it calls for: anything may need a look.
        bus.publish(steps={a})
        bus.publish()
        assert runner.take_steps() is None
        assert runner.take_steps() == set()
        # A doorbell that does not keep them gathers nothing (and holds no memory).
        assert await feed.wait(SILENT)
        assert feed.take_steps() is None


async def test_across_replicas_the_sessions_named_travel_with_the_wakeup(prefix: str) -> None:
    channel = f"{prefix}:events"
    one = RedisEventBus(Redis(host=REDIS_HOST, port=6379), channel)
    two = RedisEventBus(Redis(host=REDIS_HOST, port=6379), channel)
    raw = Redis(host=REDIS_HOST, port=6379)
    await one.start()
    await two.start()
    try:
        async with two.subscribe(keeps_steps=True) as runner:
            await _until_subscribed(one, runner)
            runner.take_steps()
            a, b = uuid4(), uuid4()
            one.publish(steps={a})
            one.publish(steps={b})
            assert await runner.wait(RUNG)
            await asyncio.sleep(SILENT)  # the window's second message, if any
            assert runner.take_steps() == {a, b}
            one.publish(steps=set())
            assert await runner.wait(RUNG)
            assert runner.take_steps() == set()
            # Too many to name: the message names none, and the other replica looks.
            one.publish(steps={uuid4() for _ in range(MAX_NAMED + 1)})
            assert await runner.wait(RUNG)
            assert runner.take_steps() is None
            # An older replica's message (no names), or a name that is not a session's.
            for message in ("an-older-replica", "someone+work/not-a-session-id"):
                await raw.publish(channel, message)
                assert await runner.wait(RUNG)
                assert runner.take_steps() is None
    finally:
        await one.close()
        await two.close()
        await raw.aclose()


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
