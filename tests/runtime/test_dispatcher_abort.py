"""A job the dispatcher aborts ends even when its first cancellation is lost on the way
(as ``asyncio.wait_for`` loses one before Python 3.12), and nothing is reported for it:
one job that goes on must not hold the loop that beats and offers for every agent."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from industrial_orchestrator.executors.base import Job, Outcome

from . import dispatcher_fakes as fakes


class _Leases:
    def __init__(self, assignment: Any) -> None:
        self._assignments = [assignment]
        self.reports: list[Any] = []

    async def claim(self, _agent: Any) -> Any:
        return self._assignments.pop() if self._assignments else None

    async def report(self, _agent: Any, report: Any) -> None:
        self.reports.append(report)


class _Deaf:
    """Loses the first cancellation it is sent, then works on until the next one."""

    name = "deaf"
    unavailable_reason = None

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancellations = 0

    async def execute(self, job: Job) -> Outcome:
        self.started.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancellations += 1
                if self.cancellations > 1:
                    raise

    async def close(self) -> None:
        pass


async def test_an_aborted_job_that_lost_its_cancellation_is_asked_again_until_it_ends() -> None:
    task = SimpleNamespace(id=uuid4(), session_id=uuid4())
    leases = _Leases(fakes.assignment(task, 1))
    executor = _Deaf()
    dispatcher = fakes.dispatcher(leases, executor)
    agent = SimpleNamespace(id=uuid4(), name="deaf", max_concurrent_tasks=1)
    assert await dispatcher._fill(agent, executor) == 1  # type: ignore[arg-type]
    await asyncio.wait_for(executor.started.wait(), 5)
    assert dispatcher.running(agent.id) == [task.id]

    # Not under a timeout: its cancellation would reach the job and stop it a second time.
    aborting = asyncio.create_task(dispatcher.abort(task.id))
    done, _ = await asyncio.wait({aborting}, timeout=5)
    if not done:
        aborting.cancel()
    assert aborting in done, "the abort waits for ever on the job that goes on"
    assert executor.cancellations == 2
    assert dispatcher.running(agent.id) == []
    assert leases.reports == []  # an aborted task is no longer the agent's to report
    await dispatcher.close()
