from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from industrial_orchestrator.coordination.locks import LocalLock, Lock, LockUnavailable, RedisLock

from .conftest import FakeClock, live_redis

SHORT_TTL = 0.1


@dataclass
class Harness:
    lock: Lock
    wait_past: Callable[[float], Awaitable[None]]
    """Let ``seconds`` pass: on the fake clock for LocalLock, for real on Redis."""


@pytest.fixture(params=["local", "redis"])
async def harness(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Harness]:
    if request.param == "local":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        yield Harness(LocalLock(clock=clock), advance)
        return
    async with live_redis(prefix) as redis:
        yield Harness(RedisLock(redis, prefix=prefix), asyncio.sleep)


async def test_acquire_is_exclusive_until_released(harness: Harness) -> None:
    lock = harness.lock
    token = await lock.acquire("sweep", 10)
    assert token is not None
    assert await lock.acquire("sweep", 10) is None
    assert await lock.acquire("other", 10) is not None  # names are independent

    assert await lock.release("sweep", token) is True
    assert await lock.release("sweep", token) is False  # already free
    assert await lock.acquire("sweep", 10) not in (None, token)


async def test_release_with_wrong_token_keeps_the_lock(harness: Harness) -> None:
    lock = harness.lock
    token = await lock.acquire("sweep", 10)
    assert token is not None

    assert await lock.release("sweep", "not-the-token") is False
    assert await lock.acquire("sweep", 10) is None
    assert await lock.extend("sweep", "not-the-token", 10) is False
    assert await lock.release("sweep", token) is True


async def test_expired_holder_cannot_touch_the_new_owners_lock(harness: Harness) -> None:
    lock = harness.lock
    old = await lock.acquire("sweep", SHORT_TTL)
    assert old is not None
    await harness.wait_past(SHORT_TTL * 2.5)

    new = await lock.acquire("sweep", 10)
    assert new is not None
    assert new != old
    assert await lock.release("sweep", old) is False
    assert await lock.extend("sweep", old, 10) is False
    assert await lock.acquire("sweep", 10) is None  # the new owner still holds it
    assert await lock.release("sweep", new) is True


async def test_extend_keeps_the_lock_past_its_first_ttl(harness: Harness) -> None:
    lock = harness.lock
    token = await lock.acquire("sweep", SHORT_TTL)
    assert token is not None

    assert await lock.extend("sweep", token, 10) is True
    await harness.wait_past(SHORT_TTL * 2.5)
    assert await lock.acquire("sweep", 10) is None
    assert await lock.release("sweep", token) is True


async def test_extend_after_expiry_fails(harness: Harness) -> None:
    lock = harness.lock
    token = await lock.acquire("sweep", SHORT_TTL)
    assert token is not None
    await harness.wait_past(SHORT_TTL * 2.5)

    assert await lock.extend("sweep", token, 10) is False
    assert await lock.acquire("sweep", 10) is not None


async def test_concurrent_acquires_yield_exactly_one_token(harness: Harness) -> None:
    tokens = await asyncio.gather(*(harness.lock.acquire("sweep", 10) for _ in range(50)))
    winners = [token for token in tokens if token is not None]
    assert len(winners) == 1
    assert len(winners[0]) == 32  # secrets.token_hex(16)


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
async def test_non_positive_ttl_is_rejected(harness: Harness, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await harness.lock.acquire("sweep", ttl)
    token = await harness.lock.acquire("sweep", 10)
    assert token is not None
    with pytest.raises(ValueError, match="ttl_seconds"):
        await harness.lock.extend("sweep", token, ttl)


async def test_unreachable_redis_raises_lock_unavailable(dead_redis: Redis) -> None:
    lock = RedisLock(dead_redis, prefix="unreachable")
    with pytest.raises(LockUnavailable) as raised:
        await lock.acquire("sweep", 10)
    assert raised.value.__cause__ is not None
    with pytest.raises(LockUnavailable):
        await lock.release("sweep", "token")
    with pytest.raises(LockUnavailable):
        await lock.extend("sweep", "token", 10)


async def test_redis_lock_keys_live_under_the_prefix(redis: Redis, prefix: str) -> None:
    token = await RedisLock(redis, prefix=prefix).acquire("sweep", 10)
    assert token is not None
    assert await redis.get(f"{prefix}:lock:sweep") == token.encode()
    assert 0 < await redis.pttl(f"{prefix}:lock:sweep") <= 10_000
