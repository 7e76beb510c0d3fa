"""A short-lived cache of serialized snapshots, such as the routable agent set.

Values are opaque bytes with a TTL: callers serialize, and a stale or missing entry only
means rebuilding the snapshot from the database, which stays the source of truth. The
Redis implementation shares one copy across replicas; the local one serves one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .locks import ttl_milliseconds


class CacheUnavailable(Exception):
    """The cache service (Redis) could not be reached."""


class SnapshotCache(Protocol):
    """What snapshot readers need of a cache."""

    async def get(self, key: str) -> bytes | None:
        """The cached value, or ``None`` if missing or expired."""

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store ``value`` for ``ttl_seconds``, replacing any previous value."""

    async def invalidate(self, key: str) -> None:
        """Drop ``key`` so the next reader rebuilds it; a missing key is fine."""


class LocalSnapshotCache:
    """One process's cache: the default when replicas share no Redis."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[bytes, float]] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        return value

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        ttl_milliseconds(ttl_seconds)
        self._entries[key] = (value, self._clock() + ttl_seconds)

    async def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise CacheUnavailable(f"Redis unreachable: {exc}") from exc


class RedisSnapshotCache:
    """A cache shared by every replica on one Redis, under ``{prefix}:cache:{key}``."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        with _reachable():
            value = await self._redis.get(self._key(key))
        # Redis clients built with decode_responses=True hand back str.
        if isinstance(value, str):
            return value.encode()
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        ttl_ms = ttl_milliseconds(ttl_seconds)
        with _reachable():
            await self._redis.set(self._key(key), value, px=ttl_ms)

    async def invalidate(self, key: str) -> None:
        with _reachable():
            await self._redis.delete(self._key(key))

    def _key(self, key: str) -> str:
        return f"{self._prefix}:cache:{key}"
