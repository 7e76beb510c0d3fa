"""PostgreSQL plans each of our statements once per connection (``DB_PLAN_CACHE_MODE``,
``storage.database``), and the statements are written so that the one plan is a good
one: a query for a rare state (a QUEUED session, a PENDING effect) still finds it by its
index, not by reading every row (``storage.written_constants``)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from industrial_orchestrator.config import ConfigurationError, load_settings
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.ports import SessionQuery
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import upgrade_to_head
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory

from ..backends import postgres_url_for, temporary_postgres_database

# Every session COMPLETED, every effect DONE: what a database that has run for a while
# mostly holds. Planned for "any state", a query for one state reads every row.
_HISTORY = """
INSERT INTO sessions (id, title, initial_prompt, priority, priority_rank, status, metadata,
    version, transition_seq, created_at, updated_at, attempt, tokens_used, cost_usd)
SELECT gen_random_uuid(), 'old ' || g, 'p', 'MEDIUM', 2, 'COMPLETED', '{}', 3, 3,
    now() - g * interval '1 minute', now(), 1, 0, 0
FROM generate_series(1, 4000) AS g;
INSERT INTO effects (key, kind, session_id, state, detail, created_at, done_at)
SELECT 'checkpoint:' || s.id, 'checkpoint.commit', s.id, 'DONE', '{}', s.created_at, now()
FROM sessions AS s;
ANALYZE sessions;
ANALYZE effects;
"""


@pytest.fixture
async def history() -> AsyncIterator[SqlUnitOfWorkFactory]:
    with temporary_postgres_database("io_test_plans") as name:
        engine = create_engine(load_settings(database_url=postgres_url_for(name)).database)
        try:
            await upgrade_to_head(engine)
            async with engine.begin() as connection:
                raw = (await connection.get_raw_connection()).driver_connection
                await raw.execute(_HISTORY)
            yield SqlUnitOfWorkFactory(engine)
        finally:
            await engine.dispose()


@pytest.mark.parametrize("mode", ["force_generic_plan", "auto"])
async def test_connections_use_the_configured_plan_cache_mode(mode):
    with temporary_postgres_database("io_test_plan_mode") as name:
        settings = load_settings(database_url=postgres_url_for(name), db_plan_cache_mode=mode)
        engine = create_engine(settings.database, plan_cache_mode=settings.db_plan_cache_mode)
        try:
            async with engine.connect() as connection:
                shown = await connection.scalar(sa.text("SHOW plan_cache_mode"))
        finally:
            await engine.dispose()
    assert shown == mode


def test_the_default_plans_once_and_a_wrong_mode_is_refused():
    assert load_settings(_env_file=None).db_plan_cache_mode == "force_generic_plan"
    with pytest.raises(ConfigurationError, match="DB_PLAN_CACHE_MODE"):
        load_settings(_env_file=None, db_plan_cache_mode="sometimes")


async def test_a_statement_is_planned_once_for_every_run(history):
    """No run of a statement is planned for its values: a hot statement costs PostgreSQL
    its execution alone (PostgreSQL's default planned the first five runs of each
    statement on each connection, and every run of some)."""
    async with history.reader() as uow:
        for _ in range(8):
            await uow.sessions.anyone_queued()
        raw = (await uow._connection.get_raw_connection()).driver_connection  # type: ignore[attr-defined]
        planned = await raw.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%QUEUED%'"
        )
    assert planned, "the statement was not prepared"
    assert sum(row["custom_plans"] for row in planned) == 0
    assert sum(row["generic_plans"] for row in planned) >= 8


async def test_queries_for_a_rare_state_use_an_index_in_their_one_plan(history):
    now = datetime.now(UTC)
    async with history.reader() as uow:
        await uow.sessions.anyone_queued()
        await uow.sessions.next_queued()
        await uow.sessions.ids_in([SessionState.QUEUED])
        await uow.sessions.unowned_in([SessionState.RUNNING, SessionState.DEGRADED], now)
        await uow.sessions.search(SessionQuery(statuses=[SessionState.QUEUED]))
        await uow.sessions.count_running()
        await uow.effects.pending()
        await uow.effects.pending(created_before=now)
        raw = (await uow._connection.get_raw_connection()).driver_connection  # type: ignore[attr-defined]
        statements = [
            row["statement"]
            for row in await raw.fetch("SELECT statement FROM pg_prepared_statements")
            if re.search(r"\bFROM (sessions|effects)\b", row["statement"])
            and "WHERE" in row["statement"]
        ]
        plans = {}
        for index, statement in enumerate(statements):
            await raw.execute(f"PREPARE probe_{index} AS {statement}")
            count = max((int(n) for n in re.findall(r"\$(\d+)", statement)), default=0)
            arguments = f"({', '.join(['NULL'] * count)})" if count else ""
            explained = await raw.fetch(f"EXPLAIN EXECUTE probe_{index}{arguments}")
            plans[statement] = "\n".join(row[0] for row in explained)
    assert len(plans) >= 7, list(plans)
    full_scans = {
        statement: plan
        for statement, plan in plans.items()
        if re.search(r"Seq Scan on (sessions|effects)\b", plan)
    }
    assert full_scans == {}
