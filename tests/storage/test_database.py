"""Storage setup: SQLite pragmas, migrations on both engines, the unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import sqlalchemy as sa

from industrial_orchestrator.config import load_settings
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.session import Actor, Session, creation_record
from industrial_orchestrator.domain.session_states import SessionState
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import current_revision, head_revision, upgrade_to_head
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory


def new_session() -> Session:
    now = datetime.now(UTC)
    return Session(uuid4(), "t", "p", Priority.LOW, SessionState.PENDING, now, now)


@pytest.fixture
async def uow(settings_for) -> AsyncIterator[SqlUnitOfWorkFactory]:
    engine = create_engine(settings_for.database)
    await upgrade_to_head(engine)
    try:
        yield SqlUnitOfWorkFactory(engine)
    finally:
        await engine.dispose()


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
        assert not await unit.sessions.save(session.evolve(version=5), moved)
        assert not await unit.sessions.save(session.evolve(status=SessionState.QUEUED), moved)
        assert await unit.sessions.save(session, moved)
        await unit.commit()
    async with uow.reader() as unit:
        stored = await unit.sessions.get(session.id)
    assert stored is not None
    assert (stored.status, stored.version) == (SessionState.RUNNING, 2)
