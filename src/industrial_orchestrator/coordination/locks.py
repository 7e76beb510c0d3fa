"""Leases that let one replica at a time do housekeeping.

A lock here only avoids duplicated work; correctness never depends on it, because the
database guards every change. So a lock that expires under a slow holder, or a Redis
outage, costs at most work done twice. Every lock is a lease with a TTL and an owner
token: only the token's holder can release or extend it, so a holder whose lease ran
out can never remove the lease another replica took since.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class LockUnavailable(Exception):
    """The lock service (Redis) could not be reached."""


class Lock(Protocol):
    """What housekeeping needs of a lock service."""

    async def acquire(self, name: str, ttl_seconds: float) -> str | None:
        """A fresh owner token if the lock was free, ``None`` if someone else holds it."""

    async def release(self, name: str, token: str) -> bool:
        """Free the lock if ``token`` still holds it; whether it did."""

    async def extend(self, name: str, token: str, ttl_seconds: float) -> bool:
        """Reset the TTL if ``token`` still holds the lock; whether it did."""


def ttl_milliseconds(ttl_seconds: float) -> int:
    """``ttl_seconds`` as whole milliseconds, rounded up so a tiny TTL never becomes 0."""
    if not ttl_seconds > 0:  # also rejects NaN
        raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")
    return math.ceil(ttl_seconds * 1000)


def _new_token() -> str:
    return secrets.token_hex(16)


class LocalLock:
    """One process's locks: the default when replicas share no Redis."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}

    async def acquire(self, name: str, ttl_seconds: float) -> str | None:
        ttl_milliseconds(ttl_seconds)
        if self._holder(name) is not None:
            return None
        token = _new_token()
        self._held[name] = (token, self._clock() + ttl_seconds)
        return token

    async def release(self, name: str, token: str) -> bool:
        if self._holder(name) != token:
            return False
        del self._held[name]
        return True

    async def extend(self, name: str, token: str, ttl_seconds: float) -> bool:
        ttl_milliseconds(ttl_seconds)
        if self._holder(name) != token:
            return False
        self._held[name] = (token, self._clock() + ttl_seconds)
        return True

    def _holder(self, name: str) -> str | None:
        """The live holder's token; an expired lease is dropped and counts as free."""
        entry = self._held.get(name)
        if entry is None:
            return None
        token, expires_at = entry
        if self._clock() >= expires_at:
            del self._held[name]
            return None
        return token


# Compare-and-act in one script, so no other client can take the lock between the
# comparison and the delete or expire.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise LockUnavailable(f"Redis unreachable: {exc}") from exc


class RedisLock:
    """Locks shared by every replica on one Redis, under ``{prefix}:lock:{name}``."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._release = redis.register_script(_RELEASE)
        self._extend = redis.register_script(_EXTEND)

    async def acquire(self, name: str, ttl_seconds: float) -> str | None:
        ttl_ms = ttl_milliseconds(ttl_seconds)
        token = _new_token()
        with _reachable():
            taken = await self._redis.set(self._key(name), token, nx=True, px=ttl_ms)
        return token if taken else None

    async def release(self, name: str, token: str) -> bool:
        with _reachable():
            deleted = await self._release(keys=[self._key(name)], args=[token])
        return bool(deleted)

    async def extend(self, name: str, token: str, ttl_seconds: float) -> bool:
        ttl_ms = ttl_milliseconds(ttl_seconds)
        with _reachable():
            extended = await self._extend(keys=[self._key(name)], args=[token, ttl_ms])
        return bool(extended)

    def _key(self, name: str) -> str:
        return f"{self._prefix}:lock:{name}"
