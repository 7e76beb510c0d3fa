"""Units of work against the real databases: what a reader holds open while it reads."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory


async def _state_of(uow: SqlUnitOfWorkFactory, pid: int) -> tuple[str, object]:
    async with uow.engine.connect() as other:
        row = (
            await other.execute(
                sa.text("SELECT state, backend_xmin FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            )
        ).one()
    return str(row[0]), row[1]


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_postgresql_reader_holds_no_transaction_between_its_statements(
    uow: SqlUnitOfWorkFactory,
):
    """At READ COMMITTED each statement has its own snapshot: a reader's transaction would
    buy nothing, cost a BEGIN and a ROLLBACK, and hold back vacuum while it is open."""
    async with uow.reader() as reader:
        assert reader._connection is not None
        pid = await reader._connection.scalar(sa.text("SELECT pg_backend_pid()"))
        await reader.sessions.ids_in([])
        assert await _state_of(uow, int(pid)) == ("idle", None)
    async with uow() as writer:
        assert writer._connection is not None
        pid = await writer._connection.scalar(sa.text("SELECT pg_backend_pid()"))
        assert (await _state_of(uow, int(pid)))[0] == "idle in transaction"
