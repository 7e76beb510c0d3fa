"""Redis clients for the coordination tests: a live one under a unique key prefix, and
one pointed at a port where nothing listens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..backends import REDIS_HOST


class FakeClock:
    """A monotonic clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@asynccontextmanager
async def live_redis(prefix: str) -> AsyncIterator[Redis]:
    """A live client; every key written under ``prefix`` is deleted when it closes."""
    client = Redis(host=REDIS_HOST, port=6379, socket_connect_timeout=3)
    try:
        yield client
    finally:
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    async with live_redis(prefix) as client:
        yield client


@pytest.fixture
async def dead_redis() -> AsyncIterator[Redis]:
    # No retries: the default retry policy backs off for seconds before giving up.
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        yield client
    finally:
        await client.aclose()
