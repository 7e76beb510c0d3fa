"""Keeping a running session's health in step with its work: DEGRADED while a READY task
has nobody to do it but DEGRADED-tier agents (or nobody at all), or a task in flight is
held up; RUNNING again once that is over. The rules are ``domain/sessions/health.py``'s;
this reads the attempts and the fleet, and writes the move.
"""

from __future__ import annotations

import contextlib

import structlog

from ..domain.agents.agent import Agent
from ..domain.errors import Conflict
from ..domain.sessions.health import health_move, unserved
from ..domain.sessions.session import Actor, Session
from ..domain.tasks.task import Task, TaskStatus
from .ports import UnitOfWork, UnitOfWorkFactory
from .running_attempts import running_attempts
from .sessions import SessionService

# The engine's logger, as before the engine was split: log queries go by its name.
log = structlog.get_logger("industrial_orchestrator.services.session_engine")


class SessionHealth:
    def __init__(self, uow: UnitOfWorkFactory, sessions: SessionService) -> None:
        self._uow = uow
        self._sessions = sessions

    async def check(self, session: Session, tasks: list[Task]) -> None:
        """DEGRADED while some READY task has nobody to do it but DEGRADED-tier agents (or
        nobody at all), or a running task is held up (its provider being retried);
        RUNNING again once every READY task has a capable agent and nothing is held up."""
        waiting = [t for t in tasks if t.status == TaskStatus.READY]
        trouble: str | None = None
        async with self._uow.reader() as uow:
            running = await running_attempts(uow, tasks)
            for task in tasks:
                attempt = running.get(task.id)
                if attempt is not None and attempt.trouble:
                    trouble = f"'{task.title}': {attempt.trouble}"
                    break
            # Tasks of a plan mostly ask for the same capabilities: one read for each set.
            capable: dict[frozenset[str], list[Agent]] = {}
            for task in [] if trouble else waiting:
                wanted = frozenset(task.required_capabilities)
                if wanted not in capable:
                    capable[wanted] = await uow.agents.holders(task.required_capabilities)
                holders = capable[wanted]
                trouble = unserved(task, holders, session.options.agents)
                if trouble and not holders:
                    offline = await _why_offline(uow, task.required_capabilities)
                    if offline:
                        trouble += f"; {offline}"
                if trouble:
                    break
        move = health_move(session.status, trouble)
        if move is None:
            return
        target, reason = move
        with contextlib.suppress(Conflict):  # moved meanwhile: the next round looks again
            await self._sessions.move(session.id, target, reason=reason, actor=Actor.SYSTEM)
            log.info("session_health", session_id=str(session.id), to=target.value, reason=reason)


async def _why_offline(uow: UnitOfWork, capabilities: list[str] | tuple[str, ...]) -> str | None:
    """Why the agents that could do the work are offline, when they said so."""
    wanted = set(capabilities)
    for agent in await uow.agents.all():
        reason = agent.metadata.get("offline_reason")
        if reason and wanted <= set(agent.capabilities):
            return f"{agent.name} is offline: {reason}"
    return None
