"""The session engine's steps: plan a RUNNING session, move its plan on, end it, and
bring its tasks in line with what the operator decided (pause, stop, cancel).

Every step reads the database, decides, and writes in one transaction under the
session's family lock, so steps are idempotent: a step repeated after a crash, or taken
by two replicas at once, changes nothing the second time. The loop that calls them, and
the verification command, live in ``runtime/``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import structlog

from ..domain import task_events
from ..domain.agent_plans import ARCHITECT, parse_agent_plan, plan_request
from ..domain.agent_tiers import Tier
from ..domain.effects import (
    CHECKPOINT_PAYLOAD,
    Effect,
    EffectKind,
    checkpoint_key,
    pending_effect,
)
from ..domain.errors import Conflict, InvalidInput, NotFound, OrchestratorError
from ..domain.events import EventType, NewEvent
from ..domain.session import Actor, Session, SessionPhase, running_seconds
from ..domain.session_options import AGENT_PLANNER, SINGLE_TASK, budget_exceeded
from ..domain.session_progress import PlanState, Progress, progress_of
from ..domain.session_states import STATE_TABLE, SessionState
from ..domain.task_templates import Decomposition, decompose_task
from ..domain.tasks import Task, TaskStatus, TaskType, new_task, task_transition
from .effects import EffectLedger
from .offer_gate import OfferGate
from .plan_advance import advance_plan, tasks_of
from .ports import Clock, UnitOfWork, UnitOfWorkFactory, WorkingTrees
from .sessions import SessionService
from .task_leases import release_attempt
from .tasks import depth_in, store_plan

log = structlog.get_logger("industrial_orchestrator.services.session_engine")

# Tasks of sessions in these states must not be worked on.
_ENDED = frozenset(
    {
        SessionState.COMPLETED,
        SessionState.PARTIALLY_COMPLETED,
        SessionState.FAILED,
        SessionState.CANCELLED,
        SessionState.STOPPED,
        SessionState.TIMEOUT,
        SessionState.ORPHANED,
    }
)
# Tasks an ended session still has to close. A FAILED task is not one of them: it ended,
# and the record of its failure stays for the operator (cancelling it would hide it).
_LIVE_TASKS = (TaskStatus.PENDING, TaskStatus.READY, TaskStatus.RUNNING)
MAX_FEEDBACK_CHARS = 4000
MAX_GIVE_UP_CHARS = 1000


@dataclass(frozen=True, slots=True)
class ReviewDue:
    """The session's plan is done and its ``verify_command`` is to be run."""

    session_id: UUID
    command: str
    workspace: str | None
    review_round: int


@dataclass(frozen=True, slots=True)
class PlanDue:
    """The session is to be planned by the architect agent; ``record_plan`` takes its
    answer (or why there is none)."""

    session_id: UUID
    request: str
    """The prompt for the architect."""


class SessionEngine:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sessions: SessionService,
        *,
        clock: Clock,
        session_timeout_seconds: int,
        checkpoint_interval_seconds: float = 300.0,
        max_parallel_tasks: int = 4,
        trees: WorkingTrees | None = None,
        ledger: EffectLedger | None = None,
        gate: OfferGate | None = None,
    ) -> None:
        if trees is not None and ledger is None:
            raise ValueError("checkpoint commits are effects: a ledger is needed with trees")
        self._trees = trees
        self._ledger = ledger
        self._uow = uow
        self._sessions = sessions
        self._clock = clock
        self._timeout = session_timeout_seconds
        self._checkpoint_every = timedelta(seconds=checkpoint_interval_seconds)
        self._max_parallel = max_parallel_tasks
        self.gate = gate if gate is not None else OfferGate()
        """Its steps make tasks READY through ``gate.opening`` (results too, shared with
        ``TaskLeases``); the dispatcher offers them through ``gate.offering``."""

    async def to_visit(self) -> list[UUID]:
        """RUNNING sessions, and sessions whose tasks still need bringing in line."""
        async with self._uow.reader() as uow:
            running = await uow.sessions.ids_in([SessionState.RUNNING, SessionState.DEGRADED])
            live = await uow.tasks.sessions_with_tasks_in(_LIVE_TASKS)
        return list(dict.fromkeys([*running, *live]))

    async def own(self, session_id: UUID, owner: str, lease_seconds: float) -> bool:
        """Take or renew this process's ownership lease of the session; whether it holds
        it. Taking over from a process whose lease ran out is an event."""
        now = self._clock()
        async with self._uow() as uow:
            held = await uow.sessions.own(
                session_id, owner, now, now + timedelta(seconds=lease_seconds)
            )
            if held is not None and held != owner:
                await uow.events.append(
                    [
                        NewEvent(
                            EventType.SESSION_TAKEN_OVER,
                            now,
                            session_id,
                            {"from": held, "to": owner, "reason": "its owner's lease expired"},
                        )
                    ]
                )
                log.warning("session_taken_over", session_id=str(session_id), previous=held)
            await uow.commit()
        return held is not None

    async def disown(self, owner: str, session_id: UUID | None = None) -> None:
        async with self._uow() as uow:
            await uow.sessions.disown(owner, session_id)
            await uow.commit()

    async def forget_owners(self) -> None:
        """After a restart of the only process a database may have (SQLite): every
        session is this process's to resume at once."""
        async with self._uow() as uow:
            await uow.sessions.forget_owners()
            await uow.commit()

    async def step(self, session_id: UUID) -> ReviewDue | PlanDue | None:
        """Move the session on as far as it goes now; a ``ReviewDue`` when its
        verification is to run."""
        session = await self._sessions.get(session_id)
        if session.status in _ENDED:
            await self._cancel_tasks(session)
            return None
        if session.status == SessionState.PAUSED:
            await self._release_running(session, "the session was paused")
            return None
        if session.status not in (SessionState.RUNNING, SessionState.DEGRADED):
            return None
        ended = await self._check_limits(session)
        if ended:
            return None
        if session.phase in (None, SessionPhase.PLANNING):
            if session.options.planner == AGENT_PLANNER and await self._unplanned(session):
                return PlanDue(
                    session.id, plan_request(session.initial_prompt, await self._capabilities())
                )
            await self._plan(session)
            return None
        await self._checkpoint_periodically(session)
        if session.phase == SessionPhase.REVIEWING:
            return self._review_due(session)
        return await self._advance(session)

    async def _checkpoint_periodically(self, session: Session) -> None:
        """A checkpoint at least every ``checkpoint_interval_seconds`` while it runs."""
        async with self._uow.reader() as uow:
            latest = await uow.checkpoints.latest(session.id)
        since = latest.created_at if latest else session.started_at
        if since is not None and self._clock() - since >= self._checkpoint_every:
            seq = latest.seq if latest else 0
            await self._checkpoint(session.id, "periodic", None, moment=f"periodic-after:{seq}")

    async def review_due(self, due: ReviewDue) -> bool:
        """Whether the verification ``due`` asked for is still to be run: a round found
        due just before another task of this process (or another replica) recorded its
        verdict must not run the command a second time."""
        session = await self._sessions.get(due.session_id)
        return (
            not STATE_TABLE[session.status].terminal
            and session.phase == SessionPhase.REVIEWING
            and session.review_round == due.review_round
        )

    async def record_review(
        self, session_id: UUID, review_round: int, passed: bool, output: str
    ) -> Session:
        """The verification's verdict: COMPLETED, another round of work, or
        PARTIALLY_COMPLETED when no round is left."""
        session = await self._sessions.get(session_id)
        if session.phase != SessionPhase.REVIEWING or session.review_round != review_round:
            return session  # decided already (another replica, or an operator)
        command = session.options.verify_command or ""
        if passed:
            await self._checkpoint(
                session_id,
                "verified",
                f"`{command}` passed",
                moment=f"verified:{review_round}",
            )
            return await self._sessions.move(
                session_id,
                SessionState.COMPLETED,
                reason=f"all tasks done; verified by `{command}`",
                actor=Actor.SYSTEM,
            )
        tail = output[-MAX_FEEDBACK_CHARS:]
        if session.review_round >= session.options.max_review_rounds:
            await self._checkpoint(
                session_id,
                "verification failed",
                tail[-500:],
                moment=f"verification-failed-last:{review_round}",
            )
            return await self._sessions.move(
                session_id,
                SessionState.PARTIALLY_COMPLETED,
                reason=(
                    f"every task is done but `{command}` still fails after "
                    f"{session.review_round} review round(s)"
                ),
                actor=Actor.SYSTEM,
            )
        now = self._clock()
        async with self._uow() as uow:
            await uow.tasks.lock_family(session_id)
            current = await uow.sessions.get(session_id)
            if current is None or current.version != session.version:
                return current or session
            fix = new_task(
                id=uuid4(),
                title=f"Fix what verification round {session.review_round + 1} found",
                description=(
                    f"Goal: {session.initial_prompt}\n\nThe verification command "
                    f"`{command}` failed:\n{tail}\n\nMake it pass."
                ),
                task_type=TaskType.CODE_GENERATION,
                required_capabilities=["code_generation"],
                estimated_effort=1.0,
                now=now,
                session_id=session_id,
            )
            fix = task_transition(fix, TaskStatus.READY, now=now)
            await uow.tasks.add(fix)
            await uow.events.append([task_events.task_created(fix)])
            back = session.evolve(
                phase=SessionPhase.EXECUTING,
                review_round=session.review_round + 1,
                version=session.version + 1,
                updated_at=now,
            )
            await self._save_phase(uow, session, back, "verification failed; fixing")
            await uow.commit()
        await self._checkpoint(
            session_id,
            "verification failed",
            f"round {back.review_round}: {tail[-500:]}",
            moment=f"verification-failed:{review_round}",
        )
        return back

    async def _unplanned(self, session: Session) -> bool:
        """No task yet, and none to carry over from a retried session."""
        if session.restored_from_checkpoint is not None:
            return False
        async with self._uow.reader() as uow:
            existing, _ = await uow.tasks.search(
                session_id=session.id, parent_id=None, statuses=(), offset=0, limit=1
            )
        return not existing

    async def _capabilities(self) -> set[str]:
        async with self._uow.reader() as uow:
            return {c for agent in await uow.agents.all() for c in agent.capabilities}

    async def record_plan(
        self,
        session_id: UUID,
        answer: str | None,
        failure: str | None,
        *,
        tokens_used: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        """Plan the session with the architect's answer; with no usable answer, with its
        template, saying why."""
        session = await self._sessions.get(session_id)
        if session.phase not in (None, SessionPhase.PLANNING) or session.status not in (
            SessionState.RUNNING,
            SessionState.DEGRADED,
        ):
            return
        plan: Decomposition | None = None
        note = failure
        if answer is not None:
            try:
                plan = parse_agent_plan(answer, await self._capabilities(), session.title)
            except InvalidInput as exc:
                note = f"the architect's plan is unusable: {exc.message}"
        if note:
            log.warning("agent_plan_refused", session_id=str(session_id), reason=note)
        await self._plan(session, agent_plan=plan, fallback=note, usage=(tokens_used, cost_usd))

    async def _plan(
        self,
        session: Session,
        *,
        agent_plan: Decomposition | None = None,
        fallback: str | None = None,
        usage: tuple[int, float] = (0, 0.0),
    ) -> None:
        now = self._clock()
        async with self._uow() as uow:
            await uow.tasks.lock_family(session.id)
            current = await uow.sessions.get(session.id)
            if current is None or current.version != session.version:
                return
            existing, _ = await uow.tasks.search(
                session_id=session.id, parent_id=None, statuses=(), offset=0, limit=1
            )
            planned = 0
            template = session.options.template
            if not existing and session.restored_from_checkpoint is not None:
                carried, planned = await _carry_over(uow, session, now)
                if carried:
                    template = "the plan of the session it continues"
                    existing = [carried]
            if not existing:
                root = new_task(
                    id=uuid4(),
                    title=session.title,
                    description=session.initial_prompt,
                    task_type=TaskType.CODE_GENERATION,
                    required_capabilities=["code_generation"],
                    estimated_effort=1.0,
                    now=now,
                    session_id=session.id,
                )
                await uow.tasks.add(root)
                await uow.events.append([task_events.task_created(root)])
                planned = 1
                if agent_plan is not None:
                    _, subtasks = await store_plan(uow, root, agent_plan, now)
                    planned += len(subtasks)
                    template = ARCHITECT
                elif template != SINGLE_TASK:
                    plan = decompose_task(
                        root.title,
                        root.description,
                        root.task_type,
                        required_capabilities=root.required_capabilities,
                        template=template,
                    )
                    _, subtasks = await store_plan(uow, root, plan, now)
                    planned += len(subtasks)
                    template = plan.choice.template
            if usage[0] or usage[1]:
                await uow.sessions.add_usage(session.id, usage[0], usage[1])
            executing = session.evolve(
                phase=SessionPhase.EXECUTING, version=session.version + 1, updated_at=now
            )
            how = f"planned {planned} task(s) from template {template}"
            if template == ARCHITECT:
                how = f"planned {planned} task(s) by the architect agent"
            if fallback:
                how += f" ({fallback})"
            await self._save_phase(uow, session, executing, how[:2000])
            await uow.commit()
        log.info("session_planned", session_id=str(session.id), tasks=planned)
        await self._checkpoint(
            session.id, "planned", f"{planned} task(s), template {template}", moment="planned"
        )

    async def _advance(self, session: Session) -> ReviewDue | None:
        async with self.gate.opening(), self._uow() as uow:
            await uow.tasks.lock_family(session.id)
            advanced = await advance_plan(
                uow, session.id, self._clock(), default_parallel=self._max_parallel
            )
            await uow.commit()
        if advanced is None:
            return None  # its budget is spent (the next step ends it), or it moved on
        progress = advanced.progress
        await self._checkpoint_finished(session.id, progress)
        if advanced.moved:
            return None  # the plan moved: its events call for another step
        if progress.state == PlanState.STUCK and not progress.finished:
            # Straight to FAILED (DEGRADED may go there): a detour through RUNNING, for
            # a task that failed while its provider was down, would only be noise.
            await self._give_up(session, progress)
            return None
        await self._check_health(session, advanced.tasks)
        if progress.state == PlanState.DONE:
            return await self._finish_plan(session, progress)
        if progress.state == PlanState.STUCK:
            await self._give_up(session, progress)
        return None

    async def _check_health(self, session: Session, tasks: list[Task]) -> None:
        """DEGRADED while some READY task has nobody to do it but DEGRADED-tier agents (or
        nobody at all), or a running task is held up (its provider being retried);
        RUNNING again once every READY task has a capable agent and nothing is held up."""
        waiting = [t for t in tasks if t.status == TaskStatus.READY]
        trouble: str | None = None
        async with self._uow.reader() as uow:
            for task in tasks:
                if task.status == TaskStatus.RUNNING and task.attempt:
                    attempt = await uow.attempts.get(task.id, task.attempt)
                    if attempt is not None and attempt.is_open and attempt.trouble:
                        trouble = f"'{task.title}': {attempt.trouble}"
                        break
            named = session.options.agents
            for task in [] if trouble else waiting:
                holders = await uow.agents.holders(task.required_capabilities)
                needs = ", ".join(task.required_capabilities)
                if named and holders and not any(a.name in named for a in holders):
                    trouble = (
                        f"none of the agents this session is limited to ({', '.join(named)}) "
                        f"is online with what '{task.title}' needs ({needs})"
                    )
                    break
                if not holders:
                    trouble = f"no agent can do '{task.title}' (needs {needs})"
                    offline = await _why_offline(uow, task.required_capabilities)
                    if offline:
                        trouble += f"; {offline}"
                elif all(agent.tier == Tier.DEGRADED for agent in holders):
                    trouble = f"only DEGRADED-tier agents can do '{task.title}' (needs {needs})"
                if trouble:
                    break
        target: SessionState | None = None
        if trouble and session.status == SessionState.RUNNING:
            target, reason = SessionState.DEGRADED, trouble
        elif not trouble and session.status == SessionState.DEGRADED:
            target, reason = SessionState.RUNNING, "every waiting task has a capable agent again"
        if target is None:
            return
        with contextlib.suppress(Conflict):  # moved meanwhile: the next round looks again
            await self._sessions.move(session.id, target, reason=reason, actor=Actor.SYSTEM)
            log.info("session_health", session_id=str(session.id), to=target.value, reason=reason)

    async def _finish_plan(self, session: Session, progress: Progress) -> ReviewDue | None:
        command = session.options.verify_command
        if command is None:
            await self._sessions.move(
                session.id,
                SessionState.COMPLETED,
                reason=f"all {len(progress.finished)} task(s) done",
                actor=Actor.SYSTEM,
            )
            return None
        now = self._clock()
        reviewing = session.evolve(
            phase=SessionPhase.REVIEWING, version=session.version + 1, updated_at=now
        )
        async with self._uow() as uow:
            await self._save_phase(uow, session, reviewing, f"verifying with `{command}`")
            await uow.commit()
        return self._review_due(reviewing)

    async def _give_up(self, session: Session, progress: Progress) -> None:
        # The first failure's own words (e.g. the provider's error and the setting to fix)
        # say more to the operator than the list of what failed.
        why = next((t.result_summary for t in progress.failed if t.result_summary), None)
        names = ", ".join(f"'{t.title}' ({t.status.value})" for t in progress.failed[:5])
        if progress.finished:
            target = SessionState.PARTIALLY_COMPLETED
            reason = f"{len(progress.finished)} task(s) done; cannot go on: {names} failed"
        else:
            target = SessionState.FAILED
            reason = f"no task could be done: {names} failed"
        if why:
            reason += f"; {why[:MAX_GIVE_UP_CHARS]}"
        await self._sessions.move(session.id, target, reason=reason, actor=Actor.SYSTEM)

    async def _check_limits(self, session: Session) -> bool:
        """End the session when it ran out of time or budget; whether it did."""
        options = session.options
        now = self._clock()
        timeout = options.timeout_seconds or self._timeout
        reason: str | None = None
        target = SessionState.FAILED
        async with self._uow.reader() as uow:
            ran = running_seconds(await uow.sessions.transitions(session.id), now)
        if ran > timeout:
            target, reason = SessionState.TIMEOUT, f"ran longer than {timeout} s"
            if session.status == SessionState.DEGRADED:
                # The guide's table has no DEGRADED -> TIMEOUT; it must end all the same.
                target = SessionState.FAILED
                reason = f"timed out while DEGRADED: ran longer than {timeout} s"
        else:
            reason = budget_exceeded(options, session.tokens_used, session.cost_usd)
        if reason is None:
            return False
        try:
            await self._sessions.move(session.id, target, reason=reason, actor=Actor.SYSTEM)
        except Conflict:
            return True  # someone moved it first; the next round sees the new state
        return True

    def _review_due(self, session: Session) -> ReviewDue | None:
        if session.options.verify_command is None:
            return None
        workspace = session.worktree.path if session.worktree else session.workspace
        return ReviewDue(
            session.id, session.options.verify_command, workspace, session.review_round
        )

    async def _save_phase(self, uow: UnitOfWork, before: Session, after: Session, why: str) -> None:
        if await uow.sessions.save(before, after) is None:
            raise Conflict(
                f"Session {before.id} changed meanwhile; the engine will look again",
                {"session_id": str(before.id)},
            )
        await uow.events.append(
            [
                NewEvent(
                    EventType.SESSION_PHASE,
                    after.updated_at,
                    after.id,
                    {
                        "from": before.phase.value if before.phase else None,
                        "to": after.phase.value if after.phase else None,
                        "reason": why,
                        "review_round": after.review_round,
                    },
                )
            ]
        )

    async def _checkpoint_finished(self, session_id: UUID, progress: Progress) -> None:
        """One automatic checkpoint after each finished task not yet in one, once the
        files the tasks delivered are written (a checkpoint without them would lie)."""
        async with self._uow.reader() as uow:
            if await uow.effects.sessions_with_pending_writes([session_id]):
                return
            latest = await uow.checkpoints.latest(session_id)
        recorded = set((latest.data.get("finished_tasks") or {}) if latest else {})
        done: dict[str, Any] = {}
        for task in progress.finished:
            done[str(task.id)] = {"title": task.title, "summary": task.result_summary}
            if str(task.id) in recorded:
                continue
            await self._checkpoint(
                session_id,
                f"after task: {task.title}"[:200],
                task.result_summary,
                finished=dict(done),
                moment=f"after-task:{task.id}",
            )

    async def _checkpoint(
        self,
        session_id: UUID,
        label: str,
        reason: str | None,
        *,
        moment: str,
        finished: dict[str, Any] | None = None,
    ) -> None:
        """A checkpoint of the session as it is now. ``moment`` names what it is taken
        for (unique in the session): its commit is an effect under that key, so taking
        the same moment's checkpoint again (after a crash) makes neither a second commit
        nor a second checkpoint."""
        async with self._uow.reader() as uow:
            session = await uow.sessions.get(session_id)
            tasks = await tasks_of(uow, session_id)
            # Which agent holds which task, on which attempt: what resuming needs to
            # recognise (and fence off) work that was in flight.
            in_flight: dict[str, Any] = {}
            for task in tasks:
                if task.status == TaskStatus.RUNNING and task.attempt:
                    attempt = await uow.attempts.get(task.id, task.attempt)
                    if attempt is not None and attempt.is_open:
                        in_flight[str(task.id)] = {
                            "attempt": attempt.attempt,
                            "agent_id": str(attempt.agent_id),
                            "lease_expires_at": attempt.expires_at.isoformat(),
                        }
        if session is None:
            return
        if finished is None:
            finished = {
                str(t.id): {"title": t.title, "summary": t.result_summary}
                for t in progress_of(tasks).finished
            }
        data: dict[str, Any] = {
            "phase": session.phase.value if session.phase else None,
            "review_round": session.review_round,
            "finished_tasks": finished,
            "tasks": {str(t.id): t.status.value for t in tasks},
            "in_flight": in_flight,
            "tokens_used": session.tokens_used,
            "cost_usd": session.cost_usd,
        }
        if self._trees is None or session.worktree is None:
            # A session closed meanwhile has its checkpoints closed: nothing to add.
            with contextlib.suppress(Conflict):
                await self._sessions.add_checkpoint(
                    session_id, label=label, reason=reason, data=data
                )
            return
        assert self._ledger is not None
        data["branch"] = session.worktree.branch
        effect, new = await self._ledger.begin(
            pending_effect(
                checkpoint_key(session_id, moment),
                EffectKind.CHECKPOINT_COMMIT,
                now=self._clock(),
                session_id=session_id,
                detail={"label": label, "reason": reason, CHECKPOINT_PAYLOAD: data},
            )
        )
        if not effect.is_done:
            await self._commit_checkpoint(effect, Path(session.worktree.path), resumed=not new)

    async def finish_checkpoint(self, effect: Effect) -> None:
        """Finish a checkpoint a dead process left PENDING (``EffectRecovery``)."""
        session: Session | None = None
        if effect.session_id is not None:
            with contextlib.suppress(NotFound):
                session = await self._sessions.get(effect.session_id)
        if session is None or session.worktree is None:
            assert self._ledger is not None
            await self._ledger.finish(
                effect, {"outcome": "the session or its tree is gone"}, drop=[CHECKPOINT_PAYLOAD]
            )
            return
        await self._commit_checkpoint(effect, Path(session.worktree.path), resumed=True)

    async def _commit_checkpoint(self, effect: Effect, tree: Path, *, resumed: bool) -> None:
        """The checkpoint's commit (the one made before a crash, found by its key, or a
        new one), then the checkpoint naming it, marked DONE with it in one transaction."""
        assert self._trees is not None
        assert self._ledger is not None
        label = str(effect.detail.get("label") or "checkpoint")
        reason = effect.detail.get("reason")
        data = dict(effect.detail.get(CHECKPOINT_PAYLOAD) or {})
        try:
            # An earlier try may have been cut off after the commit: look for it first.
            commit = await self._trees.find_commit(tree, effect.key) if resumed else None
            if commit is None:
                self._ledger.reached("effects.recorded", effect.kind)
                commit = await self._trees.commit(tree, f"checkpoint: {label}", key=effect.key)
                self._ledger.reached("effects.performed", effect.kind)
            data["commit"] = commit
        except OrchestratorError as exc:
            log.warning(
                "checkpoint_commit_failed", session_id=str(effect.session_id), error=str(exc)
            )
        assert effect.session_id is not None
        try:
            await self._sessions.add_checkpoint(
                effect.session_id,
                label=label,
                reason=str(reason) if reason is not None else None,
                data=data,
                effect=effect,
            )
        except Conflict:
            # The session ended meanwhile (its checkpoints are closed), or another
            # process finished this effect first.
            await self._ledger.finish(
                effect, {"commit": data.get("commit"), "recorded": False}, drop=[CHECKPOINT_PAYLOAD]
            )

    async def _cancel_tasks(self, session: Session) -> None:
        """An ended session's unfinished tasks are cancelled; their agents' results will
        be refused (409 lease_lost)."""
        now = self._clock()
        async with self._uow() as uow:
            await uow.tasks.lock_family(session.id)
            tasks = await tasks_of(uow, session.id)
            for task in tasks:
                if task.status in _LIVE_TASKS:
                    await release_attempt(uow, task, f"the session is {session.status.value}", now)
                    cancelled = task_transition(
                        task,
                        TaskStatus.CANCELLED,
                        now=now,
                        summary=f"cancelled: the session is {session.status.value}",
                    )
                    if await uow.tasks.save(task, cancelled):
                        await uow.events.append([task_events.task_transition(task, cancelled)])
                        await uow.contexts.delete_temporary_of(task.id)
            await uow.commit()

    async def _release_running(self, session: Session, reason: str) -> None:
        """Take the tasks in flight back from their agents; they wait, READY, for the
        session to resume (not counted against the agents or the task's attempts)."""
        now = self._clock()
        async with self._uow() as uow:
            await uow.tasks.lock_family(session.id)
            for task in await tasks_of(uow, session.id):
                if task.status != TaskStatus.RUNNING:
                    continue
                await release_attempt(uow, task, reason, now)
                failed = task_transition(
                    task, TaskStatus.FAILED, now=now, summary=f"attempt {task.attempt}: {reason}"
                )
                ready = task_transition(failed, TaskStatus.READY, now=now)
                if await uow.tasks.save(task, failed) and await uow.tasks.save(failed, ready):
                    await uow.events.append(
                        [
                            task_events.task_transition(task, failed),
                            task_events.task_transition(failed, ready),
                        ]
                    )
            await uow.commit()


async def _carry_over(uow: UnitOfWork, session: Session, now: datetime) -> tuple[Task | None, int]:
    """A retry's or a fork's plan: the tasks of the session it continues, anew, those
    finished at the restored checkpoint already COMPLETED with their results (they are not
    done again). A fork's amendment of the prompt goes to the tasks still to do. Returns a
    task of the plan (None when there was nothing to carry) and how many were stored."""
    assert session.restored_from_checkpoint is not None
    checkpoint = await uow.checkpoints.get(session.restored_from_checkpoint)
    origin = session.continues
    if checkpoint is None or origin is None:
        return None, 0
    old = await tasks_of(uow, origin)
    if not old:
        return None, 0
    finished = checkpoint.data.get("finished_tasks") or {}
    amendment = session.options.amendment
    ids = {task.id: uuid4() for task in old}
    by_id = {task.id: task for task in old}
    by_depth = sorted(old, key=lambda t: depth_in(t, by_id))
    stored: list[Task] = []
    for position, task in enumerate(by_depth):
        done = finished.get(str(task.id))
        fresh = new_task(
            id=ids[task.id],
            title=task.title,
            description=task.description
            if done is not None or not amendment
            else f"{task.description}\n\n{amendment}".strip(),
            task_type=task.task_type,
            required_capabilities=task.required_capabilities,
            estimated_effort=task.estimated_effort,
            now=now + timedelta(microseconds=position),
            session_id=session.id,
            parent_id=None if task.parent_id is None else ids.get(task.parent_id),
            template=task.template,
            files=task.files,
        )
        if done is not None:
            fresh = fresh.evolve(
                status=TaskStatus.COMPLETED,
                result_summary=(done.get("summary") if isinstance(done, dict) else None)
                or f"done in session {origin}",
                finished_at=now,
            )
        await uow.tasks.add(fresh)
        stored.append(fresh)
    for task in old:
        for dependency in task.depends_on:
            if dependency in ids:
                await uow.tasks.add_dependency(ids[task.id], ids[dependency])
    await uow.events.append([task_events.task_created(task) for task in stored])
    return stored[0], len(stored)


async def _why_offline(uow: UnitOfWork, capabilities: list[str] | tuple[str, ...]) -> str | None:
    """Why the agents that could do the work are offline, when they said so."""
    wanted = set(capabilities)
    for agent in await uow.agents.all():
        reason = agent.metadata.get("offline_reason")
        if reason and wanted <= set(agent.capabilities):
            return f"{agent.name} is offline: {reason}"
    return None
