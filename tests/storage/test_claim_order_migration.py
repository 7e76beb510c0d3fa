"""Migration 0020 keeps each task's claim order on its row: tasks written before it get
their session's (minus its priority's rank) and tasks outside any session come last; a
task written after it gets its session's as it is stored."""

from __future__ import annotations

import sqlalchemy as sa

from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import SessionState
from industrial_orchestrator.storage.migrate import downgrade_to, upgrade_to_head
from industrial_orchestrator.storage.tables import tasks
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory

from ..contracts.builders import committed, session, task

BEFORE = "0019"


async def test_tasks_before_and_after_the_migration_carry_their_sessions_claim_order(
    uow: SqlUnitOfWorkFactory,
) -> None:
    high = session(0, status=SessionState.RUNNING, priority=Priority.HIGH)
    low = session(1, status=SessionState.RUNNING, priority=Priority.LOW)
    older_high, older_low, older_loose = task(0, high.id), task(1, low.id), task(2, None)
    await committed(uow, high, low, tasks=(older_high, older_low, older_loose))
    await downgrade_to(uow.engine, BEFORE)
    await upgrade_to_head(uow.engine)
    newer_high = task(3, high.id)
    async with uow() as unit:
        await unit.tasks.add(newer_high)
        await unit.commit()
    async with uow.engine.connect() as connection:
        rows = await connection.execute(sa.select(tasks.c.id, tasks.c.claim_order))
        orders = {row.id: row.claim_order for row in rows}
    assert orders == {
        older_high.id: -Priority.HIGH.rank,
        older_low.id: -Priority.LOW.rank,
        older_loose.id: 1,
        newer_high.id: -Priority.HIGH.rank,
    }
