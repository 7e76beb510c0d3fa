"""Writes kept for the commit join the events' statement on PostgreSQL (``CommitWrites``):
they take their row locks before the event-order lock, so a commit waiting for a row
never holds up the events of every other writer."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, new_agent
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome
from industrial_orchestrator.domain.tasks.lease_rules import agent_after_attempt

from .test_event_repository import NOW, line, new_session, stored

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


def _agent() -> Agent:
    return new_agent(
        id=uuid4(),
        name="ada",
        agent_type="coder",
        capabilities=("python",),
        kind=AgentKind.EXTERNAL,
        max_concurrent_tasks=1,
        now=NOW,
    )


async def test_a_commit_waiting_for_a_row_holds_no_other_writers_events(uow):
    first, second = await new_session(uow), await new_session(uow)
    worker = _agent()
    async with uow() as unit:
        await unit.agents.add(worker)
        await unit.commit()
    settled = agent_after_attempt(worker, AttemptOutcome.COMPLETED)
    async with uow() as holder:
        # Holds the agent's row (a heartbeat, say) until it rolls back.
        assert await holder.agents.save(worker, worker.evolve(current_load=0.5))

        async def waiting() -> None:
            async with uow() as unit:
                await unit.agents.save_at_commit(worker, settled, stale=LookupError("agent"))
                await unit.events.append([line(first.id, "after the row")])
                await unit.commit()

        result = asyncio.create_task(waiting())
        await asyncio.sleep(0.3)
        assert not result.done()  # waiting for the agent's row

        async def other() -> None:
            async with uow() as unit:
                await unit.events.append([line(second.id, "meanwhile")])
                await unit.commit()

        await asyncio.wait_for(other(), 10)  # not behind the waiting commit's order lock
        assert not result.done()
    await asyncio.wait_for(result, 30)  # the holder rolled back: the guard holds
    async with uow.reader() as unit:
        assert await unit.agents.get(worker.id) == settled
    assert await stored(uow, first.id) == [(1, "after the row")]
    assert await stored(uow, second.id) == [(1, "meanwhile")]


async def test_one_row_written_twice_at_the_commit_is_refused(uow):
    """PostgreSQL would keep one of two UPDATEs of a row in one statement, unpredictably."""
    worker = _agent()
    settled = agent_after_attempt(worker, AttemptOutcome.COMPLETED)
    async with uow() as unit:
        await unit.agents.save_at_commit(worker, settled, stale=LookupError("agent"))
        with pytest.raises(ValueError, match="written twice"):
            await unit.agents.save_at_commit(settled, worker, stale=LookupError("agent"))
