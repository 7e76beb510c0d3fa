"""Leases: handing READY tasks to agents, taking their results, and taking the work back
from agents that went silent.

``TaskLeases`` is the one object the edges and the runtime hold; it composes the parts,
one concept each: claims (``task_claims``), results (``task_results``), the workspace
writes of their artifacts (``result_files``) and reaping (``lease_reaping``). The pure
rules they follow are in ``domain.tasks.lease_rules`` and ``domain.tasks.attempts``; the steps
other use cases take within their own transaction are in ``lease_endings``.
"""

from __future__ import annotations

from collections.abc import Collection
from uuid import UUID

from ..domain.agents.agent import Agent
from ..domain.effects import Effect
from ..domain.events import LogStream
from ..domain.tasks.attempts import TaskAttempt
from .effects import EffectLedger
from .lease_policy import LeasePolicy
from .lease_reaping import LeaseReaping, Reaped
from .offer_gate import OfferGate
from .ports import ArtifactWriter, Clock, StoredArtifact, UnitOfWorkFactory
from .result_files import ResultFiles
from .task_claims import Assignment, TaskClaims
from .task_results import Recorded, Report, TaskResults

__all__ = ["Assignment", "LeasePolicy", "Reaped", "Recorded", "Report", "TaskLeases"]


class TaskLeases:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        policy: LeasePolicy,
        writer: ArtifactWriter,
        ledger: EffectLedger,
        gate: OfferGate | None = None,
    ) -> None:
        self._files = ResultFiles(
            uow, clock=clock, writer=writer, ledger=ledger, artifacts_home=policy.artifacts_home
        )
        self._claims = TaskClaims(uow, clock=clock, policy=policy)
        self._results = TaskResults(
            uow,
            clock=clock,
            policy=policy,
            files=self._files,
            ledger=ledger,
            gate=gate if gate is not None else OfferGate(),
        )
        self._reaping = LeaseReaping(uow, clock=clock, policy=policy)

    async def claim(self, agent_id: UUID, *, agent: Agent | None = None) -> Assignment | None:
        """Lease the most urgent READY task ``agent_id`` can do, or None when there is
        none (``TaskClaims.claim``). Raises ``AgentNotAccepting`` when the agent is
        offline, busy or full."""
        return await self._claims.claim(agent_id, agent=agent)

    async def report(self, agent_id: UUID, report: Report) -> Recorded:
        """Record the result of the agent's current attempt at ``report.task_id``
        (``TaskResults.report``)."""
        return await self._results.report(agent_id, report)

    async def log(self, agent_id: UUID, task_id: UUID, stream: LogStream, text: str) -> int:
        """Append the agent's output for the task it holds to its session's terminal;
        how many events it took."""
        return await self._results.log(agent_id, task_id, stream, text)

    async def trouble(self, agent_id: UUID, task_id: UUID, trouble: str | None) -> bool:
        """Note what holds up the agent's attempt at the task (None: nothing any more).
        False when the lease is gone."""
        return await self._results.trouble(agent_id, task_id, trouble)

    async def attempts(self, task_id: UUID) -> list[TaskAttempt]:
        return await self._results.attempts(task_id)

    async def artifacts(self, task_id: UUID) -> list[StoredArtifact]:
        return await self._results.artifacts(task_id)

    async def let_go_unknown(self, agent_id: UUID, listed: Collection[UUID]) -> int:
        """Release the leases of ``agent_id`` that a heartbeat listing its tasks did not
        name (``LeaseReaping.let_go_unknown``); how many were let go."""
        return await self._reaping.let_go_unknown(agent_id, listed)

    async def reap(self) -> Reaped:
        """Take back the leases that ran out, and mark silent agents OFFLINE."""
        return await self._reaping.reap()

    async def finish_write(self, effect: Effect) -> None:
        """Finish a write a dead process left PENDING (``ResultFiles.finish_write``)."""
        await self._files.finish_write(effect)
