"""Leases: handing READY tasks to agents, taking their results, and taking the work back
from agents that went silent.

Every step is one transaction with guarded writes: the task row moves only from the
status and version it was read at, and an attempt closes only while still open, so a
result racing the reaper, or two agents racing for one task, have exactly one winner.
Artifacts are stored in the database with the result and written into the workspace
after the commit, so an agent whose result was refused has written nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

import structlog

from ..domain import agent_events, task_events
from ..domain.agent_liveness import MISSED_BEATS, is_overdue
from ..domain.agent_records import may_leave, tasks_to_leave
from ..domain.agents import Agent, AgentStatus
from ..domain.artifacts import Artifact, ArtifactLimits, check_artifacts
from ..domain.effects import Effect, EffectKind, pending_effect, workspace_write_key
from ..domain.errors import Conflict, InvalidInput, NotFound, OrchestratorError
from ..domain.events import EventType, LogStream, NewEvent, log_lines
from ..domain.file_conflicts import overlap
from ..domain.loop_guard import LoopStop
from ..domain.loop_reroute import barred_agents
from ..domain.session import Session
from ..domain.task_attempts import (
    AttemptOutcome,
    LeaseLost,
    TaskAttempt,
    agent_after_attempt,
    agent_with_lease,
    check_holder,
    effective_expiry,
    end_lost_attempt,
    lease_task,
)
from ..domain.tasks import FINISHED_STATUSES, Task, TaskStatus, task_transition
from .agent_records import load_records
from .effects import EffectLedger
from .offer_gate import OfferGate
from .plan_advance import advance_plan
from .ports import (
    ArtifactWriter,
    Clock,
    StoredArtifact,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = structlog.get_logger("industrial_orchestrator.services.task_leases")

# Guarded writes that lose a race are retried this many times before giving up.
_CLAIM_ROUNDS = 8
_REAP_BATCH = 200
UNKNOWN_LEASE_GRACE_SECONDS = 30.0
"""How long an agent may have a lease it does not list in its heartbeats before the lease
is let go: longer than any answer to a pull can take to arrive."""
# How many waiting tasks a claimer with failures on record looks at, to pass over those
# it should leave to a clearly better idle agent.
_LOOK_AHEAD = 8


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    lease_seconds: float
    max_attempts: int
    heartbeat_seconds: float
    started_at: datetime
    """When this orchestrator process started: nobody is reaped for the time it was down."""
    artifact_limits: ArtifactLimits
    artifacts_home: Path
    """Where the artifacts of a task without a session workspace are written."""
    max_parallel_tasks: int = 4
    """A session's tasks READY or RUNNING at once, unless its options say otherwise."""


@dataclass(frozen=True, slots=True)
class Assignment:
    task: Task
    attempt: TaskAttempt
    finished_dependencies: list[Task]
    workspace: Path


class AgentNotAccepting(Conflict):
    """The agent asked for work while offline, busy or at capacity."""

    code = "agent_not_accepting"


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


@dataclass(frozen=True, slots=True)
class Recorded:
    task: Task
    attempt: TaskAttempt
    artifacts: list[StoredArtifact]
    written: list[str]
    """Paths written into the workspace (a completed attempt's artifacts)."""


@dataclass(frozen=True, slots=True)
class Reaped:
    expired: int
    offline: int


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
        self._uow = uow
        self._clock = clock
        self._policy = policy
        self._writer = writer
        self._ledger = ledger
        self._gate = gate if gate is not None else OfferGate()

    async def claim(self, agent_id: UUID, *, agent: Agent | None = None) -> Assignment | None:
        """Lease the most urgent READY task ``agent_id`` can do, or None when there is
        none. Raises ``AgentNotAccepting`` when the agent is offline, busy or full.
        ``agent``: its record as the caller has just read it (saves reading it again; the
        lease is written only if the record is still at that version).

        Learned routing applies to pulls too: a task of a type at which the agent has a
        clearly worse record than an idle, live rival is left to that rival for a while
        (``domain.agent_records.tasks_to_leave``); the agent gets the next task, or none.

        A task of a session that would edit files a RUNNING task of that session edits
        (its plan's ``files``, or what its earlier attempts delivered) waits until that
        one is done (``domain.file_conflicts``): the agent gets the next task, or none.

        A task the loop guard stopped this agent on goes to another capable agent
        (``domain.loop_reroute``): this one gets the next task, or none."""
        # A look without locks first: most asks (a long-poll woken by an unrelated
        # commit) find nothing, and must not queue up behind the writers to say so.
        async with self._uow.reader() as uow:
            if agent is None or agent.id != agent_id:
                agent = await _agent(uow, agent_id)
            _check_accepting(agent)
            waiting = await uow.tasks.claimable(
                agent.capabilities, limit=_LOOK_AHEAD, lock=False, agent_name=agent.name
            )
            if not waiting:
                return None
            # An agent that never failed cannot be clearly worse than anyone.
            leave = (
                await self._left_to_others(uow, agent, waiting) if agent.failure_count else set()
            )
            barred = await _barred(uow, agent, waiting)
            predicted = await _predicted_files(uow, waiting)
            held = await _colliding(uow, waiting, predicted)
            if len(leave | barred | held.keys()) == len(waiting):
                _log_held(held)
                return None
            # Sessions whose tasks name files: their claims are serialised, so two
            # claimers never lease two colliding tasks at once.
            guarded = {t.session_id for t in waiting if t.session_id and predicted.get(t.id)}
        # The first round writes from the record the look used: the guarded save of the
        # agent refuses it if it changed since, and the next round reads it again.
        looked: Agent | None = agent
        for _ in range(_CLAIM_ROUNDS):
            now = self._clock()
            async with self._uow() as uow:
                agent = looked if looked is not None else await _agent(uow, agent_id)
                looked = None
                _check_accepting(agent)
                for session_id in sorted(guarded):  # in one order: no deadlock
                    await uow.tasks.lock_family(session_id)
                wide = bool(leave or guarded or barred or held)
                found = await uow.tasks.claimable(
                    agent.capabilities, limit=_LOOK_AHEAD if wide else 1, agent_name=agent.name
                )
                # Again under the locks: an attempt may have been stopped since the look.
                barred = await _barred(uow, agent, found)
                if barred and not wide:
                    continue  # the one task looked at is barred: look further
                predicted = await _predicted_files(uow, found)
                unguarded = {
                    t.session_id
                    for t in found
                    if t.session_id and predicted.get(t.id) and t.session_id not in guarded
                }
                if unguarded:
                    guarded |= unguarded  # new since the look: lock them too, and look again
                    continue
                held = await _colliding(uow, found, predicted)
                candidates = [t for t in found if t.id not in leave | barred and t.id not in held]
                if not candidates:
                    _log_held(held)
                    return None
                task = candidates[0]
                running, attempt = lease_task(
                    task, agent, now=now, lease_seconds=self._policy.lease_seconds
                )
                if not await uow.tasks.save(task, running):
                    continue  # another claimer took it first; look again
                if not await uow.agents.save(agent, agent_with_lease(agent, now=now)):
                    continue  # the agent claimed in parallel; recount
                await uow.attempts.add(attempt)
                await uow.events.append(
                    [
                        task_events.task_transition(task, running),
                        task_events.task_leased(running, attempt),
                    ]
                )
                finished = [
                    dep
                    for dep in await uow.tasks.get_many(running.depends_on)
                    if dep.status in FINISHED_STATUSES
                ]
                workspace = await self._workspace(uow, running)
                await uow.commit()
            log.info(
                "task_leased",
                task_id=str(task.id),
                agent_id=str(agent_id),
                attempt=attempt.attempt,
            )
            return Assignment(running, attempt, finished, workspace)
        raise Conflict("Too many concurrent claims; ask again", {"agent_id": str(agent_id)})

    async def _left_to_others(
        self, uow: UnitOfWork, agent: Agent, waiting: Sequence[Task]
    ) -> set[UUID]:
        """The waiting tasks ``agent`` should leave to a clearly better idle agent."""
        now = self._clock()
        types = sorted({task.task_type for task in waiting})
        mine = await load_records(uow, agent_ids=[agent.id], task_types=types, now=now)
        if not any(may_leave(record) for record in mine.values()):
            return set()
        rivals = [
            a
            for a in await uow.agents.candidates(())
            if a.id != agent.id and a.tasks_in_progress == 0
        ]
        if not rivals:
            return set()
        records = {
            **mine,
            **await load_records(uow, agent_ids=[a.id for a in rivals], task_types=types, now=now),
        }
        return tasks_to_leave(
            agent,
            waiting,
            rivals,
            records,
            now=now,
            alive_since=now - timedelta(seconds=self._policy.heartbeat_seconds),
        )

    async def report(
        self, agent_id: UUID, report: Report, *, agent: Agent | None = None
    ) -> Recorded:
        """Record the result of the agent's current attempt at ``report.task_id``.
        ``agent``: its record as the caller has just read it (saves reading it again; it
        is booked on only if the record is still at that version, else read afresh).

        A task of a session that ends moves its plan on in the same transaction: the
        tasks that waited only for it are READY when the result is acknowledged, and the
        summary tasks it finishes are closed (``plan_advance``); nothing waits for the
        engine's next step of the session."""
        if report.outcome not in (AttemptOutcome.COMPLETED, AttemptOutcome.FAILED):
            raise ValueError(f"a result is completed or failed, not {report.outcome}")
        check_artifacts(report.artifacts, self._policy.artifact_limits)
        now = self._clock()
        async with self._gate.opening(), self._uow() as uow:
            session_id = await uow.tasks.session_of(report.task_id)
            if session_id is not None:
                # The family's lock before any of its rows, as every writer of a family
                # takes it; then the task as it is under the lock.
                await uow.tasks.lock_family(session_id)
            task = await uow.tasks.get(report.task_id)
            if task is None:
                raise NotFound(
                    f"Task {report.task_id} does not exist", {"task_id": str(report.task_id)}
                )
            current = await uow.attempts.get(task.id, task.attempt) if task.attempt else None
            held = check_holder(task, current, agent_id, report.attempt)
            root = await self._workspace(uow, task)
            writing = (
                report.outcome == AttemptOutcome.COMPLETED
                and report.write_artifacts
                and bool(report.artifacts)
            )
            if writing:
                for artifact in report.artifacts:
                    self._writer.check(root, PurePosixPath(artifact.path))
            closed = held.evolve(
                outcome=report.outcome,
                finished_at=now,
                error=report.error,
                output=report.output,
                execution_time_ms=report.execution_time_ms,
                tokens_used=report.tokens_used,
                cost_usd=report.cost_usd,
            )
            if not await uow.attempts.close(closed):
                raise LeaseLost(
                    f"Attempt {held.attempt} of task {task.id} ended meanwhile; "
                    "the result was not recorded",
                    {"task_id": str(task.id), "attempt": held.attempt},
                )
            states = self._after_result(task, closed, now, final=report.final)
            await _save_steps(uow, task, states)
            await uow.attempts.add_artifacts(closed, report.artifacts, now)
            if agent is None or agent.id != agent_id:
                agent = await _agent(uow, agent_id)
            await settle_agent(uow, agent, closed.outcome or report.outcome, now)
            if task.session_id is not None and (report.tokens_used or report.cost_usd):
                await uow.sessions.add_usage(task.session_id, report.tokens_used, report.cost_usd)
                totals = await uow.sessions.get(task.session_id)
                if totals is not None:
                    await uow.events.append([_telemetry(totals, closed, now)])
            await uow.events.append(
                [
                    task_events.task_attempt_ended(task, closed, len(report.artifacts)),
                    *(
                        task_events.task_transition(before, after)
                        for before, after in zip([task, *states], states, strict=False)
                    ),
                ]
            )
            final = states[-1]
            loop_stop = report.loop_stop if closed.outcome == AttemptOutcome.FAILED else None
            if loop_stop is not None:
                requeued = final.status == TaskStatus.READY
                await uow.events.append(
                    [task_events.task_loop_stopped(task, closed, loop_stop, requeued=requeued)]
                )
            if final.is_terminal:
                await uow.contexts.delete_temporary_of(final.id)
                if task.session_id is not None:
                    await advance_plan(
                        uow,
                        task.session_id,
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
        written: list[str] = []
        if write is not None:
            self._ledger.reached("effects.recorded", EffectKind.WORKSPACE_WRITE)
            written = self._write(root, report)
            self._ledger.reached("effects.performed", EffectKind.WORKSPACE_WRITE)
            await self._files_written(write, written, [])
        log.info(
            "task_result",
            task_id=str(task.id),
            agent_id=str(agent_id),
            attempt=closed.attempt,
            outcome=report.outcome.value,
            artifacts=len(report.artifacts),
        )
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
                requeued=final.status == TaskStatus.READY,
            )
        return Recorded(final, closed, [a for a in stored if a.attempt == closed.attempt], written)

    async def log(self, agent_id: UUID, task_id: UUID, stream: LogStream, text: str) -> int:
        """Append the agent's output for the task it holds to its session's terminal;
        how many events it took."""
        now = self._clock()
        async with self._uow() as uow:
            task = await uow.tasks.get(task_id)
            if task is None:
                raise NotFound(f"Task {task_id} does not exist", {"task_id": str(task_id)})
            current = await uow.attempts.get(task.id, task.attempt) if task.attempt else None
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
            task = await uow.tasks.get(task_id)
            if task is None or not task.attempt:
                return False
            current = await uow.attempts.get(task.id, task.attempt)
            if current is None or current.agent_id != agent_id:
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

    async def let_go_unknown(self, agent_id: UUID, listed: Collection[UUID]) -> int:
        """Release the leases of ``agent_id`` that a heartbeat listing its tasks
        (``listed``) did not name, once it has had them for
        ``UNKNOWN_LEASE_GRACE_SECONDS``: the answer to its pull never reached it (the
        orchestrator died after committing the lease, or the connection did), so it will
        never report, and waiting for the lease to run out would hold the task, and its
        session, for nothing. The task goes back to the queue. How many were let go."""
        now = self._clock()
        cutoff = now - timedelta(seconds=UNKNOWN_LEASE_GRACE_SECONDS)
        known = set(listed)
        async with self._uow.reader() as uow:
            held = await uow.attempts.open_of_agent(agent_id)
        return await self._take_back(
            [a for a in held if a.task_id not in known and a.leased_at <= cutoff],
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
                    if await _lose(
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
        grace_until = self._policy.started_at + timedelta(seconds=self._policy.lease_seconds)
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

    def _after_result(
        self, task: Task, closed: TaskAttempt, now: datetime, *, final: bool = False
    ) -> list[Task]:
        if closed.outcome == AttemptOutcome.COMPLETED:
            return [task_transition(task, TaskStatus.COMPLETED, now=now, summary=_summary(closed))]
        reason = closed.error or "the agent reported a failure"
        failed = task_transition(
            task, TaskStatus.FAILED, now=now, summary=f"attempt {task.attempt} failed: {reason}"
        )
        if task.attempt < self._policy.max_attempts and not final:
            return [failed, task_transition(failed, TaskStatus.READY, now=now)]
        return [failed]

    async def finish_write(self, effect: Effect) -> None:
        """Finish a write a dead process left PENDING: the attempt's files that are not
        on disk as delivered are written; those that are, are left alone."""
        if effect.task_id is None:
            return
        async with self._uow.reader() as uow:
            task = await uow.tasks.get(effect.task_id)
            if task is None:
                await self._ledger.finish(effect, {"outcome": "the task is gone"})
                return
            artifacts = await uow.attempts.delivered(task.id, int(effect.detail.get("attempt", 0)))
            root = await self._workspace(uow, task)
        written: list[str] = []
        already: list[str] = []
        for artifact in artifacts:
            relative = PurePosixPath(artifact.path)
            try:
                if self._writer.read(root, relative) == artifact.content:
                    already.append(artifact.path)
                    continue
                self._writer.write(root, relative, artifact.content)
            except (OrchestratorError, OSError) as exc:
                log.warning(
                    "artifact_not_written", task_id=str(task.id), path=artifact.path, error=str(exc)
                )
                continue
            written.append(artifact.path)
        await self._files_written(effect, written, already)

    async def _files_written(self, effect: Effect, written: list[str], already: list[str]) -> None:
        """Mark the write DONE, with a line on the session's terminal (whose commit also
        wakes the agents waiting for the session's next tasks)."""
        now = self._clock()
        async with self._uow() as uow:
            if not await self._ledger.finish_in(
                uow, effect, {"written": written, "already": already}
            ):
                return
            if effect.session_id is not None:
                text = f"wrote {len(written)} file(s) of task {effect.task_id}"
                if already:
                    text += f"; {len(already)} were there already (written before a restart)"
                await uow.events.append(
                    log_lines(effect.session_id, LogStream.SYSTEM, text + "\n", now)
                )
            await uow.commit()

    async def _workspace(self, uow: UnitOfWork, task: Task) -> Path:
        session = await uow.sessions.get(task.session_id) if task.session_id else None
        return workspace_of(task, session, self._policy.artifacts_home)

    def _write(self, root: Path, report: Report) -> list[str]:
        written: list[str] = []
        for artifact in report.artifacts:
            try:
                self._writer.write(root, PurePosixPath(artifact.path), artifact.content)
            except (OrchestratorError, OSError) as exc:
                # Stored in the database all the same; the workspace changed under us.
                log.warning(
                    "artifact_not_written",
                    task_id=str(report.task_id),
                    path=artifact.path,
                    error=str(exc),
                )
                continue
            written.append(artifact.path)
        return written


def workspace_of(task: Task, session: Session | None, artifacts_home: Path) -> Path:
    """Where a task's work lands: its session's workspace, else a directory of the
    session's (or, outside sessions, the task's) own under ``artifacts_home``."""
    if session is not None and session.worktree is not None:
        return Path(session.worktree.path)
    if session is not None and session.workspace:
        return Path(session.workspace)
    return artifacts_home / str(task.session_id or task.id)


def session_workspace(session: Session, artifacts_home: Path) -> Path:
    if session.worktree is not None:
        return Path(session.worktree.path)
    return Path(session.workspace) if session.workspace else artifacts_home / str(session.id)


async def release_leases(
    uow: UnitOfWork,
    agent_id: UUID,
    outcome: AttemptOutcome,
    reason: str,
    now: datetime,
    max_attempts: int,
) -> int:
    """Return every task ``agent_id`` holds to the queue (or fail it when out of
    attempts), within the caller's transaction."""
    released = 0
    for attempt in await uow.attempts.open_of_agent(agent_id):
        if await _lose(uow, attempt.task_id, attempt.attempt, outcome, reason, now, max_attempts):
            released += 1
    return released


async def release_attempt(uow: UnitOfWork, task: Task, reason: str, now: datetime) -> None:
    """Close the task's open attempt as RELEASED, without holding it against the agent:
    the task was moved on from outside (an operator, its session ending or pausing), within
    the caller's transaction."""
    if task.attempt == 0:
        return
    attempt = await uow.attempts.get(task.id, task.attempt)
    if attempt is None or not attempt.is_open:
        return
    closed = attempt.evolve(outcome=AttemptOutcome.RELEASED, finished_at=now, error=reason)
    if not await uow.attempts.close(closed):
        return
    await uow.events.append([task_events.task_attempt_ended(task, closed)])
    agent = await uow.agents.get(attempt.agent_id)
    if agent is not None:
        await settle_agent(uow, agent, AttemptOutcome.RELEASED, now, on_record=False)


async def _lose(
    uow: UnitOfWork,
    task_id: UUID,
    number: int,
    outcome: AttemptOutcome,
    reason: str,
    now: datetime,
    max_attempts: int,
) -> bool:
    """End an open attempt as lost; False when it had ended already."""
    task = await uow.tasks.get(task_id)
    attempt = await uow.attempts.get(task_id, number)
    if task is None or attempt is None or not attempt.is_open:
        return False
    states, closed = end_lost_attempt(
        task, attempt, outcome, reason=reason, now=now, max_attempts=max_attempts
    )
    if not await uow.attempts.close(closed):
        return False
    if task.attempt == number:
        await _save_steps(uow, task, states)
    else:
        states = []
    agent = await uow.agents.get(attempt.agent_id)
    if agent is not None:
        # A task moved on by someone else (cancelled) is not held against the agent.
        await settle_agent(uow, agent, outcome, now, on_record=bool(states))
    await uow.events.append(
        [
            task_events.task_attempt_ended(task, closed),
            *(
                task_events.task_transition(before, after)
                for before, after in zip([task, *states], states, strict=False)
            ),
        ]
    )
    log.info(
        "lease_lost",
        task_id=str(task_id),
        agent_id=str(attempt.agent_id),
        attempt=number,
        outcome=outcome.value,
        reason=reason,
    )
    return True


async def _save_steps(uow: UnitOfWork, task: Task, states: Sequence[Task]) -> None:
    before = task
    for after in states:
        if not await uow.tasks.save(before, after):
            raise LeaseLost(
                f"Task {task.id} was changed meanwhile; the attempt's end was not recorded",
                {"task_id": str(task.id)},
            )
        before = after


async def settle_agent(
    uow: UnitOfWork,
    agent: Agent,
    outcome: AttemptOutcome,
    now: datetime,
    *,
    on_record: bool = True,
) -> None:
    """Book the attempt's end on the agent (re-reading it if a heartbeat got between)."""
    for _ in range(_CLAIM_ROUNDS):
        settled = agent_after_attempt(agent, outcome, on_record=on_record)
        if await uow.agents.save(agent, settled):
            if settled.tier != agent.tier:
                await uow.events.append([agent_events.agent_tier_changed(settled, agent.tier, now)])
            return
        reread = await uow.agents.get(agent.id)
        if reread is None:
            return
        agent = reread
    raise Conflict("The agent's record is changing too fast; retry", {"agent_id": str(agent.id)})


async def _agent(uow: UnitOfWork, agent_id: UUID) -> Agent:
    agent = await uow.agents.get(agent_id)
    if agent is None:
        raise NotFound(f"Agent {agent_id} is not registered", {"agent_id": str(agent_id)})
    return agent


def _check_accepting(agent: Agent) -> None:
    if agent.status in (AgentStatus.OFFLINE, AgentStatus.BUSY):
        raise AgentNotAccepting(
            f"Agent {agent.id} is {agent.status.value}; send a heartbeat with status "
            "'healthy' or 'degraded' before asking for work",
            {"agent_id": str(agent.id), "status": agent.status.value},
        )
    if agent.at_capacity:
        raise AgentNotAccepting(
            f"Agent {agent.id} holds {agent.tasks_in_progress} of its "
            f"{agent.max_concurrent_tasks} concurrent tasks; report a result first",
            {
                "agent_id": str(agent.id),
                "tasks_in_progress": agent.tasks_in_progress,
                "max_concurrent_tasks": agent.max_concurrent_tasks,
            },
        )


def _telemetry(session: Session, attempt: TaskAttempt, now: datetime) -> NewEvent:
    """The session's running totals after a result, for the live gauges."""
    return NewEvent(
        EventType.SESSION_TELEMETRY,
        now,
        session.id,
        {
            "tokens_used": session.tokens_used,
            "cost_usd": session.cost_usd,
            "task_id": str(attempt.task_id),
            "attempt": attempt.attempt,
            "task_tokens": attempt.tokens_used,
            "task_cost_usd": attempt.cost_usd,
        },
    )


def _summary(attempt: TaskAttempt) -> str:
    summary = attempt.output.get("summary") if attempt.output else None
    if isinstance(summary, str) and summary.strip():
        return summary.strip()[:2000]
    return f"completed by agent {attempt.agent_id} on attempt {attempt.attempt}"


async def _predicted_files(uow: UnitOfWork, candidates: Sequence[Task]) -> dict[UUID, set[str]]:
    """The files each task of a session is expected to edit: its plan's, and those its
    earlier attempts delivered."""
    in_sessions = [task for task in candidates if task.session_id is not None]
    # Only a task leased before has attempts that delivered files: the rest cost no query.
    tried = [task.id for task in in_sessions if task.attempt > 0]
    touched = await uow.attempts.touched(tried) if tried else {}
    return {task.id: {*task.files, *touched.get(task.id, ())} for task in in_sessions}


async def _colliding(
    uow: UnitOfWork, candidates: Sequence[Task], predicted: dict[UUID, set[str]]
) -> dict[UUID, dict[str, Any]]:
    """The candidates to hold back, each with why (for the log): those that would edit
    files a RUNNING task of their session edits, and those whose session has files still
    to be written (a finished task's, ``finish_write``): they would start without them."""
    held: dict[UUID, dict[str, Any]] = {}
    unwritten = await uow.effects.sessions_with_pending_writes(
        sorted({t.session_id for t in candidates if t.session_id})
    )
    for task in candidates:
        if task.session_id in unwritten:
            held[task.id] = {
                "session_id": str(task.session_id),
                "reason": "files a finished task of its session delivered are still to be written",
            }
    sessions = {t.session_id for t in candidates if t.session_id and predicted.get(t.id)}
    for session_id in sessions:
        running = await uow.tasks.of_session(session_id, (TaskStatus.RUNNING,))
        busy = await _predicted_files(uow, running)
        for task in candidates:
            if task.session_id != session_id or not predicted.get(task.id):
                continue
            for other in running:
                shared = overlap(predicted[task.id], busy.get(other.id, ()))
                if shared:
                    held[task.id] = {
                        "running_task_id": str(other.id),
                        "files": shared[:20],
                        "reason": "it would edit files a running task of its session edits",
                    }
                    break
    return held


async def _barred(uow: UnitOfWork, agent: Agent, candidates: Sequence[Task]) -> set[UUID]:
    """The candidates the loop guard stopped ``agent`` on, while another capable agent
    may still do them (``domain.loop_reroute``)."""
    # Only a task that failed before can have been stopped: the rest cost no query.
    retried = [task for task in candidates if task.attempt > 0]
    stopped = await uow.attempts.stopped_by_guard([task.id for task in retried])
    barred: set[UUID] = set()
    for task in retried:
        if agent.id not in stopped.get(task.id, ()):
            continue
        session = await uow.sessions.get(task.session_id) if task.session_id else None
        named = set(session.options.agents) if session is not None else set()
        capable = [
            holder.id
            for holder in await uow.agents.holders(task.required_capabilities)
            if not named or holder.name in named
        ]
        if agent.id in barred_agents(stopped[task.id], capable):
            barred.add(task.id)
            log.debug(
                "task_left_to_another_agent",
                task_id=str(task.id),
                agent_id=str(agent.id),
                reason="the loop guard stopped this agent on it",
            )
    return barred


def _log_held(held: dict[UUID, dict[str, Any]]) -> None:
    for task_id, why in held.items():
        log.info("task_held_back", task_id=str(task_id), **why)
