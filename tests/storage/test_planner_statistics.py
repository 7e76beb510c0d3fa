"""A new PostgreSQL database's tables get planner statistics once enough rows were
written, without waiting for autovacuum's first visit (``storage.planner_statistics``);
after that they are autovacuum's, and SQLite needs none."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from industrial_orchestrator.config import load_settings
from industrial_orchestrator.domain.sessions.session import SessionState
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import upgrade_to_head
from industrial_orchestrator.storage.planner_statistics import (
    ROWS_WORTH_ANALYZING,
    analyze_new_tables,
)
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory

from ..backends import postgres_url_for, temporary_postgres_database
from ..contracts.builders import session, task

_STATS_FLUSH_SECONDS = 10.0
"""PostgreSQL's activity counters reach pg_stat_user_tables within a second or so."""


async def _analyzed(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        found = await connection.execute(
            sa.text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
        )
        return set(found.scalars())


async def _add_tasks(uow: SqlUnitOfWorkFactory, count: int) -> None:
    owner = session(0, status=SessionState.RUNNING)
    async with uow() as unit:
        await unit.sessions.add(owner, None, None)
        for n in range(count):
            await unit.tasks.add(task(n, owner.id))
        await unit.commit()


async def test_a_new_databases_busy_tables_are_analyzed_once_and_quiet_ones_not() -> None:
    with temporary_postgres_database("io_test_statistics") as name:
        engine = create_engine(
            load_settings(database_url=postgres_url_for(name), _env_file=None).database
        )
        try:
            await upgrade_to_head(engine)
            uow = SqlUnitOfWorkFactory(engine)
            await _add_tasks(uow, 10)
            await asyncio.sleep(2)  # the counters of those ten, flushed
            assert await analyze_new_tables(engine) == []  # not worth it yet
            await _add_tasks(uow, ROWS_WORTH_ANALYZING)
            analyzed: list[str] = []
            deadline = asyncio.get_running_loop().time() + _STATS_FLUSH_SECONDS
            while not analyzed and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
                analyzed = await analyze_new_tables(engine)
            assert analyzed == ["tasks"]
            assert await _analyzed(engine) == {"tasks"}
            await _add_tasks(uow, ROWS_WORTH_ANALYZING)
            await asyncio.sleep(2)
            assert await analyze_new_tables(engine) == []  # autovacuum's from now on
        finally:
            await engine.dispose()


async def test_sqlite_needs_no_statistics(tmp_path) -> None:
    engine = create_engine(
        load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db", _env_file=None).database
    )
    try:
        await upgrade_to_head(engine)
        await _add_tasks(SqlUnitOfWorkFactory(engine), ROWS_WORTH_ANALYZING)
        assert await analyze_new_tables(engine) == []
    finally:
        await engine.dispose()
