"""Reaping: taking leases back from agents that will not report.

A lease whose time ran out (``domain.tasks.lease_rules``: never within the grace after this
process started), every lease of an agent that missed ``MISSED_BEATS`` heartbeats (it is
marked OFFLINE), and a lease its agent does not know of (its heartbeat does not list it:
the answer to its pull never arrived) is ended as lost, one transaction each, and its
task goes back to the queue while attempts are left. A take-back that races a result or
an operator loses: theirs stands.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog

from ..domain.agents import events as agent_events
from ..domain.agents.agent import Agent, AgentStatus
from ..domain.agents.liveness import MISSED_BEATS, is_overdue
from ..domain.errors import Conflict
from ..domain.tasks.attempts import AttemptOutcome, TaskAttempt
from ..domain.tasks.lease_rules import (
    effective_expiry,
    restart_grace_until,
    unknown_leases,
)
from .lease_endings import lose, release_leases
from .lease_policy import LeasePolicy
from .ports import Clock, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.task_leases")

_REAP_BATCH = 200


@dataclass(frozen=True, slots=True)
class Reaped:
    expired: int
    offline: int


class LeaseReaping:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock, policy: LeasePolicy) -> None:
        self._uow = uow
        self._clock = clock
        self._policy = policy

    async def let_go_unknown(self, agent_id: UUID, listed: Collection[UUID]) -> int:
        """Release the leases of ``agent_id`` that a heartbeat listing its tasks
        (``listed``) did not name, once it has had them for
        ``UNKNOWN_LEASE_GRACE_SECONDS``: the answer to its pull never reached it (the
        orchestrator died after committing the lease, or the connection did), so it will
        never report, and waiting for the lease to run out would hold the task, and its
        session, for nothing. The task goes back to the queue. How many were let go."""
        now = self._clock()
        async with self._uow.reader() as uow:
            held = await uow.attempts.open_of_agent(agent_id)
        return await self._take_back(
            unknown_leases(held, listed, now=now),
            AttemptOutcome.RELEASED,
            "the agent does not know of this task: its assignment never reached it",
            now,
        )

    async def _take_back(
        self, attempts: Sequence[TaskAttempt], outcome: AttemptOutcome, reason: str, now: datetime
    ) -> int:
        """End each of ``attempts`` as lost, one transaction each; how many were ended."""
        taken_back = 0
        for attempt in attempts:
            try:
                async with self._uow() as uow:
                    if await lose(
                        uow,
                        attempt.task_id,
                        attempt.attempt,
                        outcome,
                        reason,
                        now,
                        self._policy.max_attempts,
                    ):
                        await uow.commit()
                        taken_back += 1
            except Conflict as exc:  # raced with a result or an operator: theirs stands
                log.info("take_back_skipped", task_id=str(attempt.task_id), reason=exc.message)
        return taken_back

    async def reap(self) -> Reaped:
        """Take back the leases that ran out, and mark agents that missed
        ``MISSED_BEATS`` heartbeats OFFLINE (their leases return to the queue)."""
        now = self._clock()
        grace_until = restart_grace_until(self._policy.started_at, self._policy.lease_seconds)
        async with self._uow.reader() as uow:
            expired = await uow.attempts.expired(now, limit=_REAP_BATCH)
            everyone = await uow.agents.all()
        taken_back = await self._take_back(
            [a for a in expired if now > effective_expiry(a, grace_until=grace_until)],
            AttemptOutcome.EXPIRED,
            "the lease was not renewed in time",
            now,
        )
        offline = 0
        for agent in filter(self._is_overdue, everyone):
            async with self._uow() as uow:
                current = await uow.agents.get(agent.id)
                if current is None or not self._is_overdue(current):
                    continue  # it beat since: not silent after all
                gone = current.evolve(status=AgentStatus.OFFLINE, version=current.version + 1)
                if not await uow.agents.save(current, gone):
                    continue
                await uow.events.append(
                    [agent_events.agent_status_changed(gone, current.status, now)]
                )
                await release_leases(
                    uow,
                    agent.id,
                    AttemptOutcome.EXPIRED,
                    f"the agent missed {MISSED_BEATS} heartbeats",
                    now,
                    self._policy.max_attempts,
                )
                await uow.commit()
                offline += 1
        if taken_back or offline:
            log.info("reaped", expired_leases=taken_back, agents_offline=offline)
        return Reaped(taken_back, offline)

    def _is_overdue(self, agent: Agent) -> bool:
        return is_overdue(
            agent,
            now=self._clock(),
            heartbeat_seconds=self._policy.heartbeat_seconds,
            started_at=self._policy.started_at,
        )
