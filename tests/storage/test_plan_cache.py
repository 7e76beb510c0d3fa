"""PostgreSQL plans each of our statements once per connection (``DB_PLAN_CACHE_MODE``,
``storage.database``), and the statements are written so that the one plan is a good
one: a query for a rare state (a QUEUED session, a PENDING effect) still finds it by its
index, not by reading every row (``storage.written_constants``)."""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from industrial_orchestrator.config import ConfigurationError, load_settings
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.ports import SessionQuery
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import upgrade_to_head
from industrial_orchestrator.storage.task_repository import SqlTaskRepository
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


@contextlib.asynccontextmanager
async def _database_holding(rows: str, purpose: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a new database with our schema and ``rows`` (SQL) in it."""
    with temporary_postgres_database(purpose) as name:
        engine = create_engine(load_settings(database_url=postgres_url_for(name)).database)
        try:
            await upgrade_to_head(engine)
            async with engine.begin() as connection:
                raw = (await connection.get_raw_connection()).driver_connection
                await raw.execute(rows)
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
async def history() -> AsyncIterator[SqlUnitOfWorkFactory]:
    async with _database_holding(_HISTORY, "io_test_plans") as engine:
        yield SqlUnitOfWorkFactory(engine)


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


# A fleet with work waiting: 300 running sessions, each with two READY tasks any agent
# can do, and one agent that can do them all.
_WAITING = """
INSERT INTO sessions (id, title, initial_prompt, priority, priority_rank, status, metadata,
    version, transition_seq, created_at, updated_at, attempt, tokens_used, cost_usd)
SELECT gen_random_uuid(), 'running ' || g, 'p', 'MEDIUM', 2, 'RUNNING', '{}', 3, 3,
    now() - g * interval '1 minute', now(), 1, 0, 0
FROM generate_series(1, 300) AS g;
INSERT INTO tasks (id, session_id, title, description, task_type, required_capabilities,
    estimated_effort, status, version, created_at, updated_at, claim_order)
SELECT gen_random_uuid(), s.id, 'task ' || n, 'd', 'code_generation', '["code_generation"]',
    1.0, 'READY', 1, s.created_at + n * interval '1 second', now(), -2
FROM sessions AS s, generate_series(1, 2) AS n;
INSERT INTO agents (id, name, agent_type, capabilities, kind, status, max_concurrent_tasks,
    tasks_in_progress, current_load, success_count, failure_count, registered_at, metadata,
    version)
VALUES ('00000000-0000-0000-0000-0000000000a1', 'able', 'implementer',
    '["code_generation", "testing"]', 'external', 'healthy', 1, 0, 0, 0, 0, now(), '{}', 1);
ANALYZE sessions;
ANALYZE tasks;
ANALYZE agents;
"""


@pytest.fixture
async def waiting() -> AsyncIterator[AsyncEngine]:
    async with _database_holding(_WAITING, "io_test_claims") as engine:
        yield engine


async def test_a_claims_look_reads_the_tasks_it_hands_out_not_every_waiting_one(waiting):
    """Every waiting agent looks on every wake-up: its look walks the READY tasks in claim
    order and stops at its limit, and asks each task's session by its key, whatever the
    number of waiting tasks and running sessions (it read and sorted all 600, and every
    running session, when PostgreSQL guessed the capability test passes almost none)."""
    agent_id = UUID("00000000-0000-0000-0000-0000000000a1")
    async with waiting.connect() as connection, connection.begin():
        raw = (await connection.get_raw_connection()).driver_connection
        before = await _reads(raw)
        agent, found = await SqlTaskRepository(connection).claimable_for(agent_id, limit=4)
        after = await _reads(raw)
    read = {table: after[table] - before.get(table, Counter()) for table in after}
    assert agent is not None
    assert agent.name == "able"
    assert len(found) == 4
    assert read["tasks"]["rows"] <= 8, read["tasks"]
    assert read["sessions"]["seq_scan"] == 0, read["sessions"]
    assert read["sessions"]["rows"] <= 8, read["sessions"]


async def _reads(raw: Any) -> dict[str, Counter[str]]:
    """This connection's reads so far, by table: its scans of every row, and the rows it
    read (the statistics it has not handed on yet, this transaction's among them)."""
    return {
        row["relname"]: Counter(
            seq_scan=row["seq_scan"], rows=row["seq_tup_read"] + row["idx_tup_fetch"]
        )
        for row in await raw.fetch(
            "SELECT relname, seq_scan, coalesce(seq_tup_read, 0) AS seq_tup_read, "
            "coalesce(idx_tup_fetch, 0) AS idx_tup_fetch FROM pg_stat_xact_user_tables"
        )
    }
