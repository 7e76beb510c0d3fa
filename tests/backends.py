"""Real databases for the tests: a fresh SQLite file, and a PostgreSQL database of this
test run's own (created here, dropped at the end).

Outside CI an unreachable PostgreSQL skips its variants with the reason; under CI=true it
fails them, because CI starts it (`make services`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _base(url: str) -> str:
    return url.rsplit("/", 1)[0]


def postgres_url_for(database: str, driver: str = "postgresql") -> str:
    return f"{_base(ADMIN_URL).replace('postgresql', driver, 1)}/{database}"


def run_sync(coroutine_function: Any, *args: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine_function(*args)).result()


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def postgres_unavailable() -> str | None:
    try:
        run_sync(_admin, "SELECT 1")
    except Exception as exc:
        return f"PostgreSQL unreachable at {ADMIN_URL}: {exc!r}"
    return None


def require_postgres() -> None:
    reason = postgres_unavailable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: PostgreSQL must be running)")
    pytest.skip(reason)


@contextmanager
def temporary_postgres_database(prefix: str = "io_test") -> Iterator[str]:
    """Create a database for this run and yield its name; drop it afterwards."""
    require_postgres()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    run_sync(_admin, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        run_sync(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def truncate_all(database: str) -> None:
    connection = await asyncpg.connect(postgres_url_for(database), timeout=5)
    try:
        # Every table of ours that exists (a test may have left the schema behind head).
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{row["tablename"]}"' for row in tables)
            await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


async def terminate_connections(database: str) -> None:
    """Kill every server process attached to ``database``, as a restart would."""
    connection = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()


REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")


def require_redis() -> None:
    """Skip (fail under CI) when Redis does not answer a PING on ``REDIS_HOST``."""
    import redis

    try:
        redis.Redis(host=REDIS_HOST, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        reason = f"Redis unreachable at {REDIS_HOST}:6379: {exc!r}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: Redis must be running)")
        pytest.skip(reason)
