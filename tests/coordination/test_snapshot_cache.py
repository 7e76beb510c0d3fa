from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from industrial_orchestrator.coordination.snapshot_cache import (
    CacheUnavailable,
    LocalSnapshotCache,
    RedisSnapshotCache,
    SnapshotCache,
)

from .conftest import FakeClock, live_redis

SHORT_TTL = 0.1


@dataclass
class Harness:
    cache: SnapshotCache
    wait_past: Callable[[float], Awaitable[None]]
    """Let ``seconds`` pass: on the fake clock for the local cache, for real on Redis."""


@pytest.fixture(params=["local", "redis"])
async def harness(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Harness]:
    if request.param == "local":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        yield Harness(LocalSnapshotCache(clock=clock), advance)
        return
    async with live_redis(prefix) as redis:
        yield Harness(RedisSnapshotCache(redis, prefix=prefix), asyncio.sleep)


async def test_missing_key_is_none(harness: Harness) -> None:
    assert await harness.cache.get("agents") is None


async def test_get_returns_what_was_put(harness: Harness) -> None:
    cache = harness.cache
    await cache.put("agents", b'{"agents": [1, 2]}', 10)
    assert await cache.get("agents") == b'{"agents": [1, 2]}'
    assert await cache.get("other") is None

    await cache.put("agents", b"\x00\xff replaced", 10)
    assert await cache.get("agents") == b"\x00\xff replaced"


async def test_entries_expire_after_their_ttl(harness: Harness) -> None:
    cache = harness.cache
    await cache.put("agents", b"snapshot", SHORT_TTL)
    await cache.put("kept", b"long-lived", 10)
    await harness.wait_past(SHORT_TTL * 2.5)

    assert await cache.get("agents") is None
    assert await cache.get("kept") == b"long-lived"


async def test_invalidate_drops_only_that_key(harness: Harness) -> None:
    cache = harness.cache
    await cache.put("agents", b"snapshot", 10)
    await cache.put("kept", b"other", 10)

    await cache.invalidate("agents")
    await cache.invalidate("never-stored")
    assert await cache.get("agents") is None
    assert await cache.get("kept") == b"other"


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
async def test_non_positive_ttl_is_rejected(harness: Harness, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await harness.cache.put("agents", b"snapshot", ttl)
    assert await harness.cache.get("agents") is None


async def test_unreachable_redis_raises_cache_unavailable(dead_redis: Redis) -> None:
    cache = RedisSnapshotCache(dead_redis, prefix="unreachable")
    with pytest.raises(CacheUnavailable) as raised:
        await cache.get("agents")
    assert raised.value.__cause__ is not None
    with pytest.raises(CacheUnavailable):
        await cache.put("agents", b"snapshot", 10)
    with pytest.raises(CacheUnavailable):
        await cache.invalidate("agents")


async def test_redis_cache_keys_live_under_the_prefix(redis: Redis, prefix: str) -> None:
    await RedisSnapshotCache(redis, prefix=prefix).put("agents", b"snapshot", 10)
    assert await redis.get(f"{prefix}:cache:agents") == b"snapshot"
    assert 0 < await redis.pttl(f"{prefix}:cache:agents") <= 10_000
