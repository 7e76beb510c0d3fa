"""The architect agent as the engine's planner: one OpenCode turn in the session's tree,
whose answer the engine checks like any plan (``domain.agents.plans``)."""

from __future__ import annotations

from ..domain.agents.agent import AgentKind, AgentStatus
from ..domain.events import LogStream
from ..domain.sessions.session import Session
from ..domain.storable_text import storable
from ..executors.opencode.executor import OpenCodeExecutor
from ..services.agents import AgentFilter, AgentService
from ..services.events import EventLog
from ..services.ports import ProposedPlan

ARCHITECT_TYPE = "architect"


class NoArchitect(RuntimeError):
    """No internal architect agent can take the request now."""


class ArchitectPlanner:
    def __init__(self, executor: OpenCodeExecutor, agents: AgentService, events: EventLog) -> None:
        self._executor = executor
        self._agents = agents
        self._events = events

    async def propose(self, session: Session, request: str) -> ProposedPlan:
        architects = [
            agent
            for agent in await self._agents.search(AgentFilter(kinds=[AgentKind.INTERNAL]))
            if agent.agent_type == ARCHITECT_TYPE and agent.status != AgentStatus.OFFLINE
        ]
        if not architects:
            raise NoArchitect("no internal architect agent is available")
        if session.worktree is None:
            raise NoArchitect("the session has no working tree yet")
        architect = architects[0]

        async def emit(stream: LogStream, text: str) -> None:
            await self._events.append_log(
                session.id, stream, storable(f"[{architect.name}] {text}")
            )

        answer, tokens, cost = await self._executor.ask(
            architect, session.worktree.path, request, emit
        )
        # The plan's titles and descriptions are stored: the agent's text enters here.
        return ProposedPlan(storable(answer), tokens, cost)
