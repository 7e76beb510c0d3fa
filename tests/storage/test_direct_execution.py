"""Statements run directly by asyncpg on the unit of work's connection: the same rows, the
same transaction and the same errors as through SQLAlchemy."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from industrial_orchestrator.domain.agents.agent import agent_fields
from industrial_orchestrator.domain.errors import StorageUnavailable
from industrial_orchestrator.storage import direct_execution as direct
from industrial_orchestrator.storage.tables import agents, sessions, task_dependencies, tasks
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory
from tests.contracts.builders import agent, committed, session, task

_AGENT = sa.select(agents).where(agents.c.id == sa.bindparam("agent_id"))
_TASK = sa.select(tasks).where(tasks.c.id == sa.bindparam("task_id"))
_RENAME = (
    sa.update(sessions)
    .where(sessions.c.id == sa.bindparam("w_id"))
    .values(title=sa.bindparam("title"))
)


async def _sqlalchemy_rows(unit: Any, statement: Any, params: dict[str, Any]) -> list[dict]:
    return [dict(row) for row in (await unit._connection.execute(statement, params)).mappings()]


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite's rows are SQLAlchemy's anyway
async def test_rows_are_those_sqlalchemy_gives(uow: SqlUnitOfWorkFactory):
    """Every type the hot statements read (uuid, JSON, timestamps with a zone, floats,
    arrays) comes back as SQLAlchemy would give it."""
    first = session(1)
    leaf = task(1, first.id, capabilities=("python", "sql"))
    after = task(2, first.id, depends_on=(leaf.id,))
    worker = agent("w", ("python", "sql"), current_load=0.25, metadata={"zone": "a"})
    await committed(uow, first, tasks=(leaf, after))
    async with uow() as unit:
        await unit.agents.add(worker)
        await unit.commit()
    with_edges = sa.select(
        tasks,
        sa.select(sa.func.array_agg(task_dependencies.c.depends_on))
        .where(task_dependencies.c.task_id == tasks.c.id)
        .scalar_subquery()
        .label("depends_on"),
    ).where(tasks.c.session_id == sa.bindparam("session_id"))
    cases = [
        (_AGENT, {"agent_id": worker.id}),
        (_TASK, {"task_id": leaf.id}),
        (with_edges, {"session_id": first.id}),
    ]
    async with uow.reader() as unit:
        for statement, params in cases:
            expected = await _sqlalchemy_rows(unit, statement, params)
            assert expected, statement
            for _ in range(2):  # the first run describes the columns, the next reuses it
                got = await direct.fetch_all(unit._connection, statement, params)
                assert [dict(row) for row in got] == expected
                assert [{k: type(v) for k, v in row.items()} for row in got] == [
                    {k: type(v) for k, v in row.items()} for row in expected
                ]


async def test_a_write_serialises_json_as_its_column_type_does(uow: SqlUnitOfWorkFactory):
    worker = agent("w")
    async with uow() as unit:
        await unit.agents.add(worker)  # the insert runs directly
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.agents.get(worker.id) == worker


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_direct_first_statement_is_inside_the_transaction(uow: SqlUnitOfWorkFactory):
    """The unit of work's transaction begins before the first statement, even when that
    statement runs directly: rolled back, it leaves nothing."""
    stored = session(1)
    await committed(uow, stored)
    async with uow() as unit:
        changed = await direct.run(
            unit._connection, _RENAME, {"w_id": stored.id, "title": "renamed"}
        )
        assert changed == 1
        # Seen by the same transaction through SQLAlchemy, and the other way round.
        assert (await unit.sessions.get(stored.id)).title == "renamed"  # type: ignore[union-attr]
        assert (
            await unit._connection.scalar(
                sa.select(sessions.c.title).where(sessions.c.id == stored.id)
            )
            == "renamed"
        )
        # No commit: rolled back on the way out.
    async with uow.reader() as unit:
        assert (await unit.sessions.get(stored.id)).title == stored.title  # type: ignore[union-attr]


async def test_a_committed_direct_write_is_kept(uow: SqlUnitOfWorkFactory):
    stored = session(1)
    await committed(uow, stored)
    async with uow() as unit:
        await direct.run(unit._connection, _RENAME, {"w_id": stored.id, "title": "renamed"})
        await unit.commit()
    async with uow.reader() as unit:
        assert (await unit.sessions.get(stored.id)).title == "renamed"  # type: ignore[union-attr]


async def test_errors_are_sqlalchemys(uow: SqlUnitOfWorkFactory):
    worker = agent("w")
    async with uow() as unit:
        await direct.run(unit._connection, sa.insert(agents), agent_fields(worker))
        with pytest.raises(sa.exc.IntegrityError):
            await direct.run(unit._connection, sa.insert(agents), agent_fields(worker))


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_dropped_connection_is_unavailable_storage_and_replaced(
    uow: SqlUnitOfWorkFactory,
):
    """The server ends the connection under a direct statement: the use case fails as
    storage unavailable (503), the connection is not handed out again, and the next unit
    of work works."""
    stored = session(1)
    await committed(uow, stored)

    async def read_after_the_server_ended_it() -> None:
        async with uow.reader() as unit:
            assert unit._connection is not None
            pid = await unit._connection.scalar(sa.text("SELECT pg_backend_pid()"))
            async with uow.engine.connect() as other:
                await other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await unit.sessions.get(stored.id)

    with pytest.raises(StorageUnavailable):
        await read_after_the_server_ended_it()
    for _ in range(3):  # every pooled connection is a working one
        async with uow.reader() as unit:
            assert (await unit.sessions.get(stored.id)) == stored


async def test_what_cannot_run_directly_goes_through_sqlalchemy(uow: SqlUnitOfWorkFactory):
    """An expanding IN is rendered per run: it is left to SQLAlchemy, with the same API."""
    stored = [session(n) for n in range(3)]
    await committed(uow, *stored)
    listed = sa.select(sessions.c.id).where(sessions.c.id.in_(sa.bindparam("ids", expanding=True)))
    async with uow.reader() as unit:
        rows = await direct.fetch_all(
            unit._connection, listed, {"ids": [stored[0].id, stored[2].id]}
        )
        assert {row["id"] for row in rows} == {stored[0].id, stored[2].id}
