"""The dispatcher: drives internal agents, the way external agents drive themselves.

It runs a loop of its own (``start``/``close``). On a timer (``beat_seconds``) it beats
for every internal agent whose executor runs in this process, renewing the leases of the
tasks in flight and learning of tasks taken back, which it aborts. Then, and whenever a
commit may have work for an agent (the bus's work news, ``domain.work_news``: a task
turned READY, a running one ended, a session or an agent changed), it offers: agent
after agent by name, while the agent has room, it leases it the next task it can do and
runs it on the executor as a job of its own. Other commits (log lines, checkpoints,
another agent's lease) cost it nothing. When the executor returns, the dispatcher
records the outcome through ``TaskLeases.report``, exactly as an external agent's
result; the executor itself knows no service (``executors/base.py``). External agents
need none of this: they pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from uuid import UUID

import structlog

from ..coordination.event_bus import EventBus
from ..domain.agents.agent import Agent, AgentKind
from ..domain.errors import Conflict, NotFound, OrchestratorError
from ..domain.events import LogStream
from ..domain.storable_text import storable, storable_json
from ..domain.tasks.attempts import AttemptOutcome
from ..domain.tasks.lease_rules import AgentNotAccepting
from ..executors.base import Executor, Job, Outcome
from ..services.agents import AgentFilter, AgentService
from ..services.contexts import ContextService
from ..services.offer_gate import OfferGate
from ..services.sessions import SessionService
from ..services.task_leases import Assignment, Report, TaskLeases
from .cancellation import finish, stop_if_cancelled

log = structlog.get_logger("industrial_orchestrator.runtime.dispatcher")

_ABORT_ASKS = 20
_ABORT_ASK_SECONDS = 0.5
"""A job aborted is asked to stop this many times, this long apart, before it is left
to end by itself (its result is refused: the task is no longer its agent's)."""

EXECUTOR_KEY = "executor"
"""The agent metadata key naming the executor that drives an internal agent."""


class Dispatcher:
    def __init__(
        self,
        agents: AgentService,
        leases: TaskLeases,
        executors: Mapping[str, Executor],
        *,
        sessions: SessionService,
        contexts: ContextService,
        gate: OfferGate | None = None,
        bus: EventBus | None = None,
        beat_seconds: float = 1.0,
    ) -> None:
        """``gate``: the session engine's (``SessionEngine.gate``), so that a task its
        steps make READY is never offered to a later agent before an earlier one.
        ``bus``: whose work news wakes the loop (``start``); ``beat_seconds``: how often
        the agents beat, which bounds how late a task taken back is aborted."""
        self._gate = gate if gate is not None else OfferGate()
        self._bus = bus
        self._beat_every = beat_seconds
        self._loop: asyncio.Task[None] | None = None
        self._waiting = False
        """The loop is between rounds (waiting for news or its beat)."""
        self._stopping = asyncio.Event()
        self._agents = agents
        self._leases = leases
        self._sessions = sessions
        self._contexts = contexts
        self._executors = dict(executors)
        self._jobs: dict[UUID, tuple[UUID, asyncio.Task[None]]] = {}
        """Task id -> (agent id, the job's asyncio task)."""

    async def start(self) -> None:
        """Run the loop (module docstring); nothing to run without an executor here."""
        if self._bus is None or not self._executors:
            return
        self._stopping.clear()
        self._loop = asyncio.create_task(self._run(self._bus), name="dispatcher")

    async def _run(self, bus: EventBus) -> None:
        next_beat = 0.0
        async with bus.subscribe(work_only=True) as news:
            while not self._stopping.is_set():
                beat = time.monotonic() >= next_beat
                if beat:
                    next_beat = time.monotonic() + self._beat_every
                try:
                    await self.run_once(beat=beat)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let the loop die; the next round tries again
                    stop_if_cancelled()
                    log.exception("dispatch_failed")
                if self._stopping.is_set():
                    return
                self._waiting = True
                try:
                    await news.wait(max(0.0, next_beat - time.monotonic()))
                finally:
                    self._waiting = False

    async def run_once(self, *, beat: bool = True) -> int:
        """One round; how many tasks were started. With ``beat``, every agent beats
        first; then the READY tasks are offered to the agents in order (by name),
        through the gate."""
        if not self._executors:
            return 0
        if not beat and all(e.unavailable_reason for e in self._executors.values()):
            return 0  # nobody here can take work (no model, say): the beat says why
        ready: list[tuple[Agent, Executor]] = []
        for agent in await self._agents.search(AgentFilter(kinds=[AgentKind.INTERNAL])):
            executor = self._executors.get(str(agent.metadata.get(EXECUTOR_KEY, "")))
            if executor is None:
                continue
            current = await self._beat(agent, executor) if beat else _offerable(agent, executor)
            if current is not None:
                ready.append((current, executor))
        started = 0
        async with self._gate.offering():
            for agent, executor in ready:
                started += await self._fill(agent, executor)
        return started

    def running(self, agent_id: UUID) -> list[UUID]:
        """The tasks in flight on ``agent_id``."""
        return [task for task, (owner, _) in self._jobs.items() if owner == agent_id]

    async def abort(self, task_id: UUID) -> None:
        """Stop the task at once (it is no longer the agent's); nothing is reported.

        The job is asked again until it ends: a library can lose a cancellation (before
        Python 3.12, ``asyncio.wait_for`` drops one that lands as its future completes),
        and waiting on a job that never ends would stop every agent's beats and offers.
        """
        entry = self._jobs.pop(task_id, None)
        if entry is None:
            return
        _, job = entry
        for _ in range(_ABORT_ASKS):
            job.cancel()
            await asyncio.wait({job}, timeout=_ABORT_ASK_SECONDS)
            if job.done():
                if not job.cancelled() and job.exception() is not None:
                    log.error("task_abort_failed", task_id=str(task_id), exc_info=job.exception())
                log.info("task_aborted", task_id=str(task_id))
                return
        log.warning("task_abort_ignored", task_id=str(task_id), asks=_ABORT_ASKS)

    async def close(self) -> None:
        """Stop the loop after its round, abort the jobs in flight (their leases run out
        and the reaper puts their tasks back), and close the executors."""
        self._stopping.set()
        if self._loop is not None:
            loop, self._loop = self._loop, None
            if self._waiting:
                loop.cancel()  # no round to let finish: not a wait for the next beat
            await finish([loop])
        for task_id in list(self._jobs):
            await self.abort(task_id)
        for executor in self._executors.values():
            await executor.close()

    async def _beat(self, agent: Agent, executor: Executor) -> Agent | None:
        """The agent as it beat (its leases renewed, the tasks taken back aborted), or
        None when it is not to be given work this round."""
        reason = executor.unavailable_reason
        if reason is not None:
            # Not beating lets its leases run out; saying why tells the operator.
            with contextlib.suppress(NotFound, Conflict):
                await self._agents.mark_offline(agent.id, reason)
            return None
        try:
            beat = await self._agents.heartbeat(agent.id, working_on=self.running(agent.id))
        except (NotFound, Conflict):
            return None  # deregistered, or busy being changed: next round
        for task_id in beat.abort:
            await self.abort(task_id)
        return beat.agent

    async def _fill(self, agent: Agent, executor: Executor) -> int:
        """Lease the agent tasks while it has room, each run as a job of its own."""
        started = 0
        while len(self.running(agent.id)) < agent.max_concurrent_tasks:
            try:
                assignment = await self._leases.claim(agent.id)
            except AgentNotAccepting:
                break
            if assignment is None:
                break
            task_id = assignment.task.id
            self._jobs[task_id] = (
                agent.id,
                asyncio.create_task(
                    self._perform(executor, agent, assignment),
                    name=f"{executor.name}-{task_id}",
                ),
            )
            started += 1
            log.info(
                "task_dispatched",
                executor=executor.name,
                agent_id=str(agent.id),
                task_id=str(task_id),
            )
        return started

    async def _perform(self, executor: Executor, agent: Agent, assignment: Assignment) -> None:
        """The job, then its outcome recorded; an executor's failure is the task's."""
        task = assignment.task
        started = time.monotonic()
        try:
            try:
                job = await self._job(agent, assignment)
                outcome = await executor.execute(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("executor_failed", executor=executor.name, task_id=str(task.id))
                outcome = Outcome(succeeded=False, error=f"{type(exc).__name__}: {exc}")
            await self._record(agent, assignment, outcome, time.monotonic() - started)
        finally:
            entry = self._jobs.get(task.id)
            if entry is not None and entry[1] is asyncio.current_task():
                del self._jobs[task.id]

    async def _job(self, agent: Agent, assignment: Assignment) -> Job:
        task = assignment.task
        session = await self._sessions.get(task.session_id) if task.session_id else None
        view, _ = await self._contexts.effective(
            session_id=task.session_id, agent_id=agent.id, task_id=task.id
        )

        async def emit(stream: LogStream, text: str) -> None:
            if task.session_id is None:
                return
            with contextlib.suppress(OrchestratorError):  # output is best effort
                # An agent's output is untrusted text that no client can be refused
                # for: what the database cannot keep becomes U+FFFD here, where it enters.
                await self._leases.log(agent.id, task.id, stream, storable(text))

        async def hold_up(trouble: str | None) -> None:
            with contextlib.suppress(OrchestratorError):
                await self._leases.trouble(
                    agent.id, task.id, storable(trouble) if trouble else None
                )

        return Job(
            agent=agent,
            task=task,
            attempt=assignment.attempt.attempt,
            workspace=assignment.workspace,
            finished_dependencies=assignment.finished_dependencies,
            goal=session.initial_prompt if session is not None else None,
            context=view.data,
            max_tokens=session.options.max_tokens if session is not None else None,
            emit=emit,
            hold_up=hold_up,
        )

    async def _record(
        self, agent: Agent, assignment: Assignment, outcome: Outcome, seconds: float
    ) -> None:
        task = assignment.task
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
                    execution_time_ms=int(seconds * 1000),
                    tokens_used=outcome.tokens_used,
                    cost_usd=outcome.cost_usd,
                    write_artifacts=outcome.write_artifacts,
                    loop_stop=outcome.loop_stop,
                    final=outcome.final,
                ),
            )
        except OrchestratorError as exc:  # e.g. lease_lost: the task moved on
            log.info("result_refused", task_id=str(task.id), reason=exc.message)


def _offerable(agent: Agent, executor: Executor) -> Agent | None:
    """The agent as read, for an offer between two beats; None while its executor is
    unavailable (the next beat says why)."""
    return agent if executor.unavailable_reason is None else None
