"""Executors: how a task leased to one of *our own* agents gets done.

Two ways to get work to an agent, one bookkeeping:

* **External agents pull** (the External Agent Protocol): they long-poll for a task,
  report its result and stream its output over HTTP. Nothing here runs for them; their
  leases, results and aborts (a heartbeat's ``abort`` list) go through ``TaskLeases``.
* **Internal agents are driven**: registered with ``kind=internal`` and
  ``metadata.executor`` naming an executor of this process (e.g. ``opencode``). The
  engine's dispatcher leases READY tasks for them and hands each to the executor, which
  runs it in the background, streams its output, and reports the outcome, all through
  the same ``TaskLeases`` calls an external agent makes over HTTP. So routing, leases,
  fencing, retries and tier bookkeeping are one and the same for both kinds.

``BackgroundExecutor`` does the common part (a task per assignment, abort by
cancellation, reporting); an executor implements ``execute``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import structlog

from ..domain.agents import Agent
from ..domain.artifacts import Artifact
from ..domain.errors import OrchestratorError
from ..domain.events import LogStream
from ..domain.loop_guard import LoopStop
from ..domain.storable_text import storable, storable_json
from ..domain.task_attempts import AttemptOutcome
from ..services.task_leases import Assignment, Report, TaskLeases

log = structlog.get_logger("industrial_orchestrator.executors")

LogLine = Callable[[LogStream, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an executor made of a task."""

    succeeded: bool
    summary: str | None = None
    error: str | None = None
    artifacts: Sequence[Artifact] = ()
    output: dict[str, Any] = field(default_factory=dict)
    tokens_used: int = 0
    cost_usd: float = 0.0
    write_artifacts: bool = True
    loop_stop: LoopStop | None = None
    """The loop guard stopped the task (``domain.loop_guard``)."""
    final: bool = False
    """A failure another attempt would only repeat (a provider outage past its budget,
    ``domain.provider_outage``): the task fails without being tried again."""


class Executor(Protocol):
    name: str

    @property
    def unavailable_reason(self) -> str | None:
        """Why the executor cannot take work now (None when it can)."""

    def running(self, agent_id: UUID) -> list[UUID]:
        """The tasks in flight on ``agent_id``."""

    async def start(self, agent: Agent, assignment: Assignment) -> None:
        """Begin the leased task in the background; its outcome is reported to the
        leases when it ends."""

    async def abort(self, task_id: UUID) -> None:
        """Stop the task at once (it is no longer the agent's); nothing is reported."""

    async def close(self) -> None: ...


class BackgroundExecutor:
    """Runs each assignment as an asyncio task and reports its ``Outcome``."""

    name = "background"

    def __init__(self, leases: TaskLeases) -> None:
        self._leases = leases
        self._tasks: dict[UUID, tuple[UUID, asyncio.Task[None]]] = {}

    @property
    def unavailable_reason(self) -> str | None:
        return None

    async def execute(self, agent: Agent, assignment: Assignment, emit: LogLine) -> Outcome:
        raise NotImplementedError

    def running(self, agent_id: UUID) -> list[UUID]:
        return [task for task, (owner, _) in self._tasks.items() if owner == agent_id]

    async def start(self, agent: Agent, assignment: Assignment) -> None:
        task_id = assignment.task.id
        self._tasks[task_id] = (
            agent.id,
            asyncio.create_task(self._run(agent, assignment), name=f"{self.name}-{task_id}"),
        )

    async def abort(self, task_id: UUID) -> None:
        entry = self._tasks.pop(task_id, None)
        if entry is None:
            return
        _, job = entry
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        log.info("task_aborted", executor=self.name, task_id=str(task_id))

    async def close(self) -> None:
        for task_id in list(self._tasks):
            await self.abort(task_id)

    async def _run(self, agent: Agent, assignment: Assignment) -> None:
        task = assignment.task
        started = time.monotonic()

        async def emit(stream: LogStream, text: str) -> None:
            if task.session_id is None:
                return
            with contextlib.suppress(OrchestratorError):  # output is best effort
                # An agent's output is untrusted text that no client can be refused
                # for: what the database cannot keep becomes U+FFFD here, where it enters.
                await self._leases.log(agent.id, task.id, stream, storable(text))

        try:
            try:
                outcome = await self.execute(agent, assignment, emit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the executor's failure is the task's, not ours
                log.exception("executor_failed", executor=self.name, task_id=str(task.id))
                outcome = Outcome(succeeded=False, error=f"{type(exc).__name__}: {exc}")
            output = dict(outcome.output)
            if outcome.summary:
                output["summary"] = outcome.summary
            try:
                await self._leases.report(
                    agent.id,
                    Report(
                        task_id=task.id,
                        outcome=(
                            AttemptOutcome.COMPLETED if outcome.succeeded else AttemptOutcome.FAILED
                        ),
                        attempt=assignment.attempt.attempt,
                        artifacts=outcome.artifacts,
                        output=storable_json(output),
                        error=storable(outcome.error) if outcome.error else outcome.error,
                        execution_time_ms=int((time.monotonic() - started) * 1000),
                        tokens_used=outcome.tokens_used,
                        cost_usd=outcome.cost_usd,
                        write_artifacts=outcome.write_artifacts,
                        loop_stop=outcome.loop_stop,
                        final=outcome.final,
                    ),
                )
            except OrchestratorError as exc:  # e.g. lease_lost: the task moved on
                log.info("result_refused", task_id=str(task.id), reason=exc.message)
        finally:
            entry = self._tasks.get(task.id)
            if entry is not None and entry[1] is asyncio.current_task():
                del self._tasks[task.id]
