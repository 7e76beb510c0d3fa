"""Results: what the agent holding a task's lease reports while it works (its output,
what holds it up) and at the end (the result), and the record of its attempts.

A result is taken only from the holder of the task's current, open attempt (the
attempt number is the fencing token, ``domain.tasks.lease_rules.check_holder``), and in one
transaction with guarded writes: the attempt closes only while still open, so a result
racing the reaper has exactly one winner. The task moves on, the agent is booked, the
session's plan advances and the artifacts are stored in that transaction; they are
written into the workspace after the commit (``result_files``), so an agent whose result
was refused has written nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog

from ..domain.effects import Effect, EffectKind, pending_effect, workspace_write_key
from ..domain.errors import Conflict, InvalidInput, NotFound
from ..domain.events import LogStream, log_lines
from ..domain.sessions.session import Session
from ..domain.tasks import events as task_events
from ..domain.tasks.artifacts import Artifact, check_artifacts
from ..domain.tasks.attempts import AttemptOutcome, LeaseLost, TaskAttempt, after_result
from ..domain.tasks.lease_rules import check_holder
from ..domain.tasks.loop_guard import LoopStop
from ..domain.tasks.task import Task, TaskStatus
from .effects import EffectLedger
from .lease_endings import RETRY_ROUNDS, not_registered, settle_agent_at_commit
from .lease_policy import LeasePolicy
from .offer_gate import OfferGate
from .plan_advance import advance_read_plan
from .ports import Clock, StoredArtifact, UnitOfWorkFactory
from .result_files import ResultFiles, task_workspace

log = structlog.get_logger("industrial_orchestrator.services.task_leases")


@dataclass(frozen=True, slots=True)
class Report:
    task_id: UUID
    outcome: AttemptOutcome
    """COMPLETED or FAILED."""
    attempt: int | None = None
    artifacts: Sequence[Artifact] = ()
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    execution_time_ms: int | None = None
    tokens_used: int = 0
    cost_usd: float = 0.0
    write_artifacts: bool = True
    """False when the files are in the workspace already (the artifacts are a record)."""
    loop_stop: LoopStop | None = None
    """The loop guard stopped the attempt (a FAILED one): recorded as ``task.loop_stopped``."""
    final: bool = False
    """A FAILED attempt another would only repeat (set by this process's executors, never
    from an agent's HTTP report): the task fails without being tried again."""


class _AgentChanged(Exception):
    """The agent's row moved on between the read a result booked it from and the commit."""


@dataclass(frozen=True, slots=True)
class Recorded:
    task: Task
    attempt: TaskAttempt
    artifacts: list[StoredArtifact]
    written: list[str]
    """Paths written into the workspace (a completed attempt's artifacts)."""


class TaskResults:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        policy: LeasePolicy,
        files: ResultFiles,
        ledger: EffectLedger,
        gate: OfferGate,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._policy = policy
        self._files = files
        self._ledger = ledger
        self._gate = gate

    async def report(self, agent_id: UUID, report: Report) -> Recorded:
        """Record the result of the agent's current attempt at ``report.task_id``. The
        agent's record is read in the transaction's first statement (and booked on only
        if it is still at that version when the transaction commits: else the whole
        result again). ``AgentNotRegistered`` when the agent is not registered, before
        anything else is looked at.

        A task of a session that ends moves its plan on in the same transaction: the
        tasks that waited only for it are READY when the result is acknowledged, and the
        summary tasks it finishes are closed (``plan_advance``); nothing waits for the
        engine's next step of the session."""
        if report.outcome not in (AttemptOutcome.COMPLETED, AttemptOutcome.FAILED):
            raise ValueError(f"a result is completed or failed, not {report.outcome}")
        check_artifacts(report.artifacts, self._policy.artifact_limits)
        for _ in range(RETRY_ROUNDS):
            try:
                recorded, write, root = await self._record(agent_id, report)
                break
            except _AgentChanged:
                continue  # a heartbeat got between: the whole result again, read afresh
        else:
            raise Conflict(
                "The agent's record is changing too fast; retry", {"agent_id": str(agent_id)}
            )
        written: list[str] = []
        if write is not None:
            assert root is not None
            self._ledger.reached("effects.recorded", EffectKind.WORKSPACE_WRITE)
            written = self._files.write(root, report.task_id, report.artifacts)
            self._ledger.reached("effects.performed", EffectKind.WORKSPACE_WRITE)
            await self._files.files_written(write, written, [])
        task, closed = recorded.task, recorded.attempt
        log.info(
            "task_result",
            task_id=str(task.id),
            agent_id=str(agent_id),
            attempt=closed.attempt,
            outcome=report.outcome.value,
            artifacts=len(report.artifacts),
        )
        loop_stop = report.loop_stop if closed.outcome == AttemptOutcome.FAILED else None
        if loop_stop is not None:
            log.warning(
                "task_loop_stopped",
                task_id=str(task.id),
                session_id=str(task.session_id) if task.session_id else None,
                agent_id=str(agent_id),
                attempt=closed.attempt,
                kind=loop_stop.trip.kind.value,
                message=loop_stop.trip.message,
                rolled_back=len(loop_stop.rolled_back),
                rollback_error=loop_stop.rollback_error,
                tokens_used=closed.tokens_used,
                requeued=task.status == TaskStatus.READY,
            )
        return Recorded(task, closed, recorded.artifacts, written)

    async def _record(
        self, agent_id: UUID, report: Report
    ) -> tuple[Recorded, Effect | None, Path | None]:
        """``report``'s transaction: the result recorded, and the files to write after
        it (their promise, and where they go). One read after the family's lock (the
        session, its tasks and the attempt), the writes kept for the commit: on
        PostgreSQL a result is five round trips, BEGIN and COMMIT included."""
        now = self._clock()
        async with self._gate.opening(), self._uow() as uow:
            # The family's lock before any of its rows, as every writer of a family takes
            # it, with the agent's record (the HTTP route does not read it to authenticate);
            # then the task as it is under the lock, with its session and siblings.
            agent, session_id = await uow.tasks.lock_session_family_for(report.task_id, agent_id)
            if agent is None:
                raise not_registered(agent_id)
            session: Session | None = None
            siblings: list[Task] = []
            if session_id is None:
                task, current = await uow.attempts.with_task(report.task_id)
            else:
                session, siblings, current = await uow.attempts.in_session(
                    session_id, report.task_id
                )
                task = next((t for t in siblings if t.id == report.task_id), None)
            if task is None:
                raise NotFound(
                    f"Task {report.task_id} does not exist", {"task_id": str(report.task_id)}
                )
            held = check_holder(task, current, agent_id, report.attempt)
            writing = (
                report.outcome == AttemptOutcome.COMPLETED
                and report.write_artifacts
                and bool(report.artifacts)
            )
            # Where the files go: only a result that writes some needs to know.
            root: Path | None = None
            if writing:
                root = await task_workspace(uow, task, self._policy.artifacts_home)
                self._files.check(root, report.artifacts)
            closed = held.evolve(
                outcome=report.outcome,
                finished_at=now,
                error=report.error,
                output=report.output,
                execution_time_ms=report.execution_time_ms,
                tokens_used=report.tokens_used,
                cost_usd=report.cost_usd,
            )
            lost = LeaseLost(
                f"Attempt {held.attempt} of task {task.id} ended meanwhile; "
                "the result was not recorded",
                {"task_id": str(task.id), "attempt": held.attempt},
            )
            await uow.attempts.close_at_commit(closed, stale=lost)
            states = after_result(
                task, closed, now=now, max_attempts=self._policy.max_attempts, final=report.final
            )
            final = states[-1]
            await uow.tasks.save_at_commit(task, final, stale=lost)
            await uow.attempts.add_artifacts(closed, report.artifacts, now)
            outcome = closed.outcome or report.outcome
            await settle_agent_at_commit(uow, agent, outcome, now, stale=_AgentChanged())
            if task.session_id is not None and (report.tokens_used or report.cost_usd):
                await uow.sessions.add_usage(task.session_id, report.tokens_used, report.cost_usd)
                totals = await uow.sessions.get(task.session_id)
                if totals is not None:
                    session = totals  # the plan moves on within the budget left
                    await uow.events.append([task_events.session_telemetry(totals, closed, now)])
            await uow.events.append(
                [
                    task_events.task_attempt_ended(task, closed, len(report.artifacts)),
                    *(
                        task_events.task_transition(before, after)
                        for before, after in zip([task, *states], states, strict=False)
                    ),
                ]
            )
            loop_stop = report.loop_stop if closed.outcome == AttemptOutcome.FAILED else None
            if loop_stop is not None:
                requeued = final.status == TaskStatus.READY
                await uow.events.append(
                    [task_events.task_loop_stopped(task, closed, loop_stop, requeued=requeued)]
                )
            if final.is_terminal:
                await uow.contexts.delete_temporary_at_commit(final.id)
                if session is not None:
                    await advance_read_plan(
                        uow,
                        session,
                        [final if t.id == final.id else t for t in siblings],
                        now,
                        default_parallel=self._policy.max_parallel_tasks,
                    )
            write: Effect | None = None
            if writing:
                # In the result's transaction: the task is done only with its files
                # promised, and its session's next tasks wait for them (``claim``).
                write, _ = await self._ledger.record_in(
                    uow,
                    pending_effect(
                        workspace_write_key(task.id, closed.attempt),
                        EffectKind.WORKSPACE_WRITE,
                        now=now,
                        session_id=task.session_id,
                        task_id=task.id,
                        detail={"attempt": closed.attempt, "files": len(report.artifacts)},
                    ),
                )
            # Read in the transaction (no second one after the commit), and only when
            # the attempt delivered some: nothing else stores an attempt's artifacts.
            stored = await uow.attempts.artifacts(task.id) if report.artifacts else []
            await uow.commit()
        delivered = [a for a in stored if a.attempt == closed.attempt]
        return Recorded(final, closed, delivered, []), write, root

    async def log(self, agent_id: UUID, task_id: UUID, stream: LogStream, text: str) -> int:
        """Append the agent's output for the task it holds to its session's terminal;
        how many events it took."""
        now = self._clock()
        async with self._uow() as uow:
            task, current = await uow.attempts.with_task(task_id)
            if task is None:
                raise NotFound(f"Task {task_id} does not exist", {"task_id": str(task_id)})
            check_holder(task, current, agent_id, None)
            if task.session_id is None:
                raise InvalidInput(
                    f"Task {task_id} belongs to no session: there is no terminal to write to",
                    {"task_id": str(task_id)},
                )
            new = log_lines(task.session_id, stream, text, now)
            await uow.events.append(new)
            await uow.commit()
        return len(new)

    async def trouble(self, agent_id: UUID, task_id: UUID, trouble: str | None) -> bool:
        """Note what holds up the agent's attempt at the task (None: nothing any more);
        the engine shows its session DEGRADED meanwhile. False when the lease is gone."""
        async with self._uow() as uow:
            task, current = await uow.attempts.with_task(task_id)
            if task is None or current is None or current.agent_id != agent_id:
                return False
            changed = await uow.attempts.set_trouble(task.id, task.attempt, trouble)
            if changed and current.trouble != trouble and task.session_id is not None:
                await uow.events.append(
                    [task_events.task_held_up(task, task.attempt, trouble, self._clock())]
                )
            await uow.commit()
        return changed

    async def attempts(self, task_id: UUID) -> list[TaskAttempt]:
        async with self._uow.reader() as uow:
            if await uow.tasks.get(task_id) is None:
                raise NotFound(f"Task {task_id} does not exist", {"task_id": str(task_id)})
            return await uow.attempts.of_task(task_id)

    async def artifacts(self, task_id: UUID) -> list[StoredArtifact]:
        async with self._uow.reader() as uow:
            if await uow.tasks.get(task_id) is None:
                raise NotFound(f"Task {task_id} does not exist", {"task_id": str(task_id)})
            return await uow.attempts.artifacts(task_id)
