"""The dispatcher: drives internal agents, the way external agents drive themselves.

Each round, for every internal agent whose executor runs in this process, it beats for
the agent (renewing the leases of the tasks in flight, and learning of tasks taken back,
which it aborts) and, while the agent has room, leases it the next task it can do and
starts it on the executor. External agents need none of this: they pull.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import structlog

from ..domain.agents import Agent, AgentKind
from ..domain.errors import Conflict, NotFound
from ..executors.base import Executor
from ..services.agents import AgentFilter, AgentService
from ..services.task_leases import AgentNotAccepting, TaskLeases

log = structlog.get_logger("industrial_orchestrator.runtime.dispatcher")

EXECUTOR_KEY = "executor"
"""The agent metadata key naming the executor that drives an internal agent."""


class Dispatcher:
    def __init__(
        self, agents: AgentService, leases: TaskLeases, executors: Mapping[str, Executor]
    ) -> None:
        self._agents = agents
        self._leases = leases
        self._executors = dict(executors)

    async def run_once(self) -> int:
        """One round; how many tasks were started."""
        if not self._executors:
            return 0
        started = 0
        for agent in await self._agents.search(AgentFilter(kinds=[AgentKind.INTERNAL])):
            executor = self._executors.get(str(agent.metadata.get(EXECUTOR_KEY, "")))
            if executor is not None:
                started += await self._drive(agent, executor)
        return started

    async def close(self) -> None:
        for executor in self._executors.values():
            await executor.close()

    async def _drive(self, agent: Agent, executor: Executor) -> int:
        reason = executor.unavailable_reason
        if reason is not None:
            # Not beating lets its leases run out; saying why tells the operator.
            with contextlib.suppress(NotFound, Conflict):
                await self._agents.mark_offline(agent.id, reason)
            return 0
        try:
            beat = await self._agents.heartbeat(agent.id, working_on=executor.running(agent.id))
        except (NotFound, Conflict):
            return 0  # deregistered, or busy being changed: next round
        for task_id in beat.abort:
            await executor.abort(task_id)
        started = 0
        current = beat.agent
        while len(executor.running(current.id)) < current.max_concurrent_tasks:
            try:
                assignment = await self._leases.claim(current.id)
            except AgentNotAccepting:
                break
            if assignment is None:
                break
            await executor.start(current, assignment)
            started += 1
            log.info(
                "task_dispatched",
                executor=executor.name,
                agent_id=str(current.id),
                task_id=str(assignment.task.id),
            )
        return started
