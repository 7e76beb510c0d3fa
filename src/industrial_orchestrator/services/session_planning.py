"""Planning a RUNNING session: its tasks from its template, from the architect agent's
answer, or, for a retried or forked session, the plan of the session it continues.

A session planned by the architect is planned in two steps: the engine asks for a plan
(``PlanDue``), the runtime asks the agent, and ``SessionEngine.record_plan`` takes its
answer; an answer that cannot be used falls back to the template, saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import structlog

from ..domain.agents.plans import ARCHITECT, parse_agent_plan, plan_request
from ..domain.errors import InvalidInput
from ..domain.planning.decomposition import decompose_task
from ..domain.planning.plans import Decomposition
from ..domain.sessions.options import AGENT_PLANNER, SINGLE_TASK
from ..domain.sessions.session import Session, SessionPhase
from ..domain.sessions.states import SessionState
from ..domain.tasks import events as task_events
from ..domain.tasks.task import Task, TaskStatus, TaskType, new_task
from .offer_gate import OfferGate
from .plan_advance import Advanced, advance_plan, advance_read_plan, tasks_of
from .ports import Clock, UnitOfWork, UnitOfWorkFactory
from .session_checkpoints import SessionCheckpoints
from .session_phases import PhaseSteps, save_phase
from .sessions import SessionService
from .tasks import depth_in, store_plan

# The engine's logger, as before the engine was split: log queries go by its name.
log = structlog.get_logger("industrial_orchestrator.services.session_engine")


@dataclass(frozen=True, slots=True)
class PlanDue:
    """The session is to be planned by the architect agent; ``record_plan`` takes its
    answer (or why there is none)."""

    session_id: UUID
    request: str
    """The prompt for the architect."""


class SessionPlanning(PhaseSteps):
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sessions: SessionService,
        checkpoints: SessionCheckpoints,
        *,
        clock: Clock,
        gate: OfferGate,
        max_parallel_tasks: int,
    ) -> None:
        super().__init__(uow, sessions, checkpoints, clock=clock)
        self._gate = gate
        self._max_parallel = max_parallel_tasks

    async def step(self, session: Session) -> PlanDue | Advanced | None:
        """Plan the session now (where its plan stands then; None when the session
        changed meanwhile), or a ``PlanDue`` when the architect is to plan it."""
        if session.options.planner == AGENT_PLANNER and await self._unplanned(session):
            return PlanDue(
                session.id, plan_request(session.initial_prompt, await self._capabilities())
            )
        return await self._plan(session)

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

    async def record(
        self,
        session_id: UUID,
        answer: str | None,
        failure: str | None,
        usage: tuple[int, float],
    ) -> None:
        """Plan the session with the architect's answer; with no usable answer, with its
        template, saying why. ``usage``: the tokens and cost the architect spent on it."""
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
        await self._plan(session, agent_plan=plan, fallback=note, usage=usage)

    async def _plan(
        self,
        session: Session,
        *,
        agent_plan: Decomposition | None = None,
        fallback: str | None = None,
        usage: tuple[int, float] = (0, 0.0),
    ) -> Advanced | None:
        """Store the session's plan, move it to EXECUTING and open its first tasks, in
        one transaction under its family lock; then its ``planned`` checkpoint. None when
        it changed since it was read (the next step looks again); else where its plan
        stands, as opened."""
        now = self._clock()
        async with self._gate.opening(), self._uow() as uow:
            await uow.tasks.lock_family(session.id)
            current, known = await uow.tasks.with_session(session.id)
            if current is None or current.version != session.version:
                return None
            existing = [task for task in known if task.parent_id is None][:1]
            # The plan's tasks as stored here, when they are all of them (else read).
            stored: list[Task] | None = None
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
                plan = agent_plan
                if plan is None and template != SINGLE_TASK:
                    plan = decompose_task(
                        root.title,
                        root.description,
                        root.task_type,
                        required_capabilities=root.required_capabilities,
                        template=template,
                    )
                if plan is None:
                    await uow.tasks.add(root)
                    await uow.events.append([task_events.task_created(root)])
                    stored = [root]
                else:
                    grouped, subtasks = await store_plan(uow, root, plan, now, new=True)
                    stored = [grouped, *subtasks]
                    template = ARCHITECT if agent_plan is not None else plan.choice.template
                planned = len(stored)
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
            await save_phase(uow, session, executing, how[:2000])
            # Its first tasks open in the same commit: not at a later step, which waits
            # its turn behind every other session's when many start together.
            if stored is not None and not (usage[0] or usage[1]):
                advanced = await advance_read_plan(
                    uow, executing, stored, now, default_parallel=self._max_parallel
                )
            else:  # tasks stored before, or usage the session read here lacks
                advanced = await advance_plan(
                    uow, session.id, now, default_parallel=self._max_parallel
                )
            await uow.commit()
        log.info("session_planned", session_id=str(session.id), tasks=planned)
        await self._checkpoints.take(
            session.id,
            "planned",
            f"{planned} task(s), template {template}",
            moment="planned",
            known=None if advanced is None else (advanced.session, advanced.tasks),
        )
        return advanced


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
