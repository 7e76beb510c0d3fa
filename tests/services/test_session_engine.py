"""The engine's step on the real app (both backends), called directly."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from industrial_orchestrator.bootstrap import Components
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.tasks.task import TaskStatus
from industrial_orchestrator.services.sessions import NewSession


# The family lock is PostgreSQL's (an advisory lock); SQLite writers hold the database's.
@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_step_with_nothing_to_move_does_not_wait_for_the_family_lock(app: FastAPI):
    """After a result (which moved the plan in its own transaction) the step mostly finds
    nothing to open: it then neither writes nor queues behind the session's writers."""
    components: Components = app.state.components
    created = await components.sessions.create(
        NewSession("s", "build it", auto_start=True, options=SessionOptions(template="single"))
    )
    session_id = created.session.id
    engine = components.session_engine
    await engine.step(session_id)  # planned, and its one task opened
    async with components.uow.reader() as uow:
        statuses = [t.status for t in await uow.tasks.of_session(session_id)]
    assert TaskStatus.READY in statuses
    async with components.uow() as writer:
        await writer.tasks.lock_family(session_id)  # a result's transaction, say
        await asyncio.wait_for(engine.step(session_id), timeout=10)
