"""Storage setup: SQLite pragmas, migrations on both engines, the unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import sqlalchemy as sa

from industrial_orchestrator.config import load_settings
from industrial_orchestrator.domain.errors import Conflict, StorageUnavailable
from industrial_orchestrator.domain.events import EventType, NewEvent
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Actor, Session, creation_record
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import (
    current_revision,
    downgrade_to,
    head_revision,
    upgrade_to_head,
)
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory

from ..backends import postgres_url_for, temporary_postgres_database


def new_session() -> Session:
    now = datetime.now(UTC)
    return Session(uuid4(), "t", "p", Priority.LOW, SessionState.PENDING, now, now)


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    settings = load_settings(orchestrator_home=tmp_path / "home", _env_file=None)
    engine = create_engine(settings.database)
    try:
        async with engine.connect() as connection:
            mode = await connection.scalar(sa.text("PRAGMA journal_mode"))
            timeout = await connection.scalar(sa.text("PRAGMA busy_timeout"))
            foreign_keys = await connection.scalar(sa.text("PRAGMA foreign_keys"))
        assert mode == "wal"
        assert timeout >= 5000
        assert foreign_keys == 1
        assert (tmp_path / "home" / "orchestrator.db").exists()
    finally:
        await engine.dispose()


async def test_migrations_reach_head_and_are_idempotent(uow):
    await upgrade_to_head(uow.engine)
    assert await current_revision(uow.engine) == head_revision()
    async with uow.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    assert {"sessions", "session_transitions", "checkpoints", "alembic_version"} <= tables


async def test_history_sequence_is_unique_by_constraint(uow):
    """The database itself refuses a second history row with the same sequence number."""
    session = new_session()
    async with uow() as unit:
        await unit.sessions.add(session, None, None)
        await unit.sessions.add_transition(creation_record(session, Actor.OPERATOR))
        await unit.commit()
    async with uow() as unit:
        with pytest.raises(sa.exc.IntegrityError):
            await unit.sessions.add_transition(creation_record(session, Actor.SYSTEM))


async def test_uncommitted_work_is_rolled_back(uow):
    session = new_session()
    async with uow() as unit:
        await unit.sessions.add(session, None, None)
    async with uow.reader() as unit:
        assert await unit.sessions.get(session.id) is None


async def test_guarded_save_refuses_a_stale_version_or_state(uow):
    session = new_session()
    async with uow() as unit:
        await unit.sessions.add(session, None, None)
        await unit.commit()
    moved = session.evolve(status=SessionState.RUNNING, version=2)
    async with uow() as unit:
        assert await unit.sessions.save(session.evolve(version=5), moved) is None
        assert await unit.sessions.save(session.evolve(status=SessionState.QUEUED), moved) is None
        assert await unit.sessions.save(session, moved, reserve_events=2) == 2
        await unit.commit()
    async with uow.reader() as unit:
        stored = await unit.sessions.get(session.id)
    assert stored is not None
    assert (stored.status, stored.version) == (SessionState.RUNNING, 2)


@pytest.fixture
def fresh_database_url(backend, tmp_path) -> Iterator[str]:
    """A database no test has migrated yet."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with temporary_postgres_database("io_test_migration") as name:
        yield postgres_url_for(name)


async def test_upgrading_a_populated_database_keeps_its_sessions(fresh_database_url, tmp_path):
    """Revision 0002 (events) applied on top of a 0001 database with data in it."""
    settings = load_settings(
        database_url=fresh_database_url, orchestrator_home=tmp_path, _env_file=None
    )
    engine = create_engine(settings.database)
    try:
        await upgrade_to_head(engine, "0001")
        assert await current_revision(engine) == "0001"
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO sessions (id, title, initial_prompt, priority, priority_rank,"
                    " status, metadata, version, transition_seq, created_at, updated_at,"
                    " attempt, tokens_used, cost_usd) VALUES (:id, 't', 'p', 'LOW', 0,"
                    " 'PENDING', '{}', 1, 1, :now, :now, 1, 0, 0)"
                ),
                {
                    "id": uuid4().hex if engine.dialect.name == "sqlite" else str(uuid4()),
                    "now": datetime.now(UTC),
                },
            )
        await upgrade_to_head(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            counters = (await connection.execute(sa.text("SELECT event_seq FROM sessions"))).all()
        assert [tuple(row) for row in counters] == [(0,)]
    finally:
        await engine.dispose()


async def test_upgrading_gives_the_running_sessions_their_slots(fresh_database_url, tmp_path):
    """0018 (``running_slots``): the sessions holding a slot when it is applied (RUNNING,
    DEGRADED) get one each, so the limit counts them at once."""
    settings = load_settings(
        database_url=fresh_database_url, orchestrator_home=tmp_path, _env_file=None
    )
    engine = create_engine(settings.database)
    try:
        await upgrade_to_head(engine, "0017")
        ids = {status: uuid4() for status in ("RUNNING", "DEGRADED", "PAUSED", "PENDING")}
        async with engine.begin() as connection:
            for status, session_id in ids.items():
                await connection.execute(
                    sa.text(
                        "INSERT INTO sessions (id, title, initial_prompt, priority,"
                        " priority_rank, status, metadata, version, transition_seq,"
                        " created_at, updated_at, attempt, tokens_used, cost_usd) VALUES"
                        " (:id, 't', 'p', 'LOW', 0, :status, '{}', 1, 1, :now, :now, 1, 0, 0)"
                    ),
                    {
                        "id": session_id.hex
                        if engine.dialect.name == "sqlite"
                        else str(session_id),
                        "status": status,
                        "now": datetime.now(UTC),
                    },
                )
        await upgrade_to_head(engine)
        factory = SqlUnitOfWorkFactory(engine)
        async with factory() as uow:
            # Two slots are held: at a limit of 2 the paused session cannot start; at 3
            # it can, and the running ones have theirs already.
            assert not await uow.sessions.take_running_slot(ids["PAUSED"], 2)
            assert not await uow.sessions.take_running_slot(ids["RUNNING"], 3)
            assert await uow.sessions.take_running_slot(ids["PAUSED"], 3)
            assert not await uow.sessions.take_running_slot(ids["PENDING"], 3)
    finally:
        await engine.dispose()


async def test_the_newest_migration_goes_down_and_up_keeping_the_events(
    fresh_database_url, tmp_path
):
    """0016 (``next_due_at``) and 0017 (``checkpoint_checked_at``) add a column in place:
    on SQLite a batch copy of the sessions table would drop the old one, and with it
    (foreign keys on) every event."""
    settings = load_settings(
        database_url=fresh_database_url, orchestrator_home=tmp_path, _env_file=None
    )
    engine = create_engine(settings.database)
    try:
        await upgrade_to_head(engine)
        factory = SqlUnitOfWorkFactory(engine)
        session = new_session()
        async with factory() as uow:
            await uow.sessions.add(session, None, None)
            await uow.sessions.add_transition(creation_record(session, Actor.OPERATOR))
            await uow.events.append(
                [NewEvent(EventType.SESSION_LOG, session.created_at, session.id, {"text": "x"})]
            )
            await uow.commit()
        await downgrade_to(engine, "0015")
        await upgrade_to_head(engine)
        assert await current_revision(engine) == head_revision()
        async with factory.reader() as uow:
            events = await uow.events.for_session(session.id, after_seq=0, limit=10)
        assert [e.payload for e in events] == [{"text": "x"}]
    finally:
        await engine.dispose()


async def test_the_migrations_build_exactly_the_schema_the_code_declares(uow):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from industrial_orchestrator.storage.tables import metadata

    def differences(sync_connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(sync_connection, opts={"compare_type": False})
        return list(compare_metadata(context, metadata))

    async with uow.engine.connect() as connection:
        diff = await connection.run_sync(differences)
    assert diff == []


async def test_a_dropped_connection_mid_use_case_hides_nothing():
    """PostgreSQL ends the connection while a use case holds it (a restart, a failover):
    the rollback and close on the way out fail, and must not replace the use case's own
    outcome: a decided refusal stays that refusal, a finished read stays finished, and a
    query that met the dead connection is StorageUnavailable (503), never a raw driver
    error (500)."""
    with temporary_postgres_database("io_test_dropped") as name:
        engine = create_engine(load_settings(database_url=postgres_url_for(name)).database)
        try:
            await upgrade_to_head(engine)
            factory = SqlUnitOfWorkFactory(engine)

            async def drop(uow: object) -> None:
                connection = uow._connection  # type: ignore[attr-defined]
                pid = await connection.scalar(sa.text("select pg_backend_pid()"))
                async with engine.connect() as other:
                    await other.execute(sa.text(f"select pg_terminate_backend({pid})"))

            async def refuse() -> None:
                async with factory() as uow:
                    await drop(uow)
                    raise Conflict("decided before the connection died")

            async def query_the_dead() -> None:
                async with factory() as uow:
                    await drop(uow)
                    await uow.sessions.get(uuid4())

            with pytest.raises(Conflict, match="decided"):
                await refuse()

            async with factory.reader() as uow:
                found = await uow.sessions.get(uuid4())
                await drop(uow)
            assert found is None  # the read had finished: its answer stands

            with pytest.raises(StorageUnavailable):
                await query_the_dead()

            async with factory() as uow:  # and the pool serves again
                assert await uow.sessions.get(uuid4()) is None
        finally:
            await engine.dispose()


async def test_a_process_opens_at_most_its_pool_and_keeps_what_it_opened():
    """Bursts wider than the pool wait for a connection rather than open one that would
    be closed after the burst: each such connection cost PostgreSQL a new backend and
    every statement prepared and planned again on it."""
    with temporary_postgres_database("io_test_pool") as name:
        engine = create_engine(
            load_settings(database_url=postgres_url_for(name)).database, pool_size=2
        )
        backends: list[int] = []

        async def use() -> None:
            async with engine.connect() as connection:
                backends.append(await connection.scalar(sa.text("SELECT pg_backend_pid()")))
                await connection.execute(sa.text("SELECT pg_sleep(0.05)"))

        try:
            for _ in range(2):  # two bursts of six at once
                await asyncio.gather(*(use() for _ in range(6)))
        finally:
            await engine.dispose()
    assert len(backends) == 12
    assert len(set(backends)) == 2


async def test_the_connection_used_last_is_used_next():
    """A steady load runs on the connections it needs, warm, whatever a burst opened:
    first in, first out handed each statement to every connection of the pool in turn,
    each preparing and planning it again."""
    with temporary_postgres_database("io_test_lifo") as name:
        engine = create_engine(
            load_settings(database_url=postgres_url_for(name)).database, pool_size=4
        )

        async def backend() -> int:
            async with engine.connect() as connection:
                pid: int = await connection.scalar(sa.text("SELECT pg_backend_pid()"))
                await connection.execute(sa.text("SELECT pg_sleep(0.02)"))
                return pid

        try:
            burst = await asyncio.gather(*(backend() for _ in range(4)))
            one_at_a_time = [await backend() for _ in range(6)]
        finally:
            await engine.dispose()
    assert len(set(burst)) == 4  # the burst opened the whole pool
    assert len(set(one_at_a_time)) == 1
