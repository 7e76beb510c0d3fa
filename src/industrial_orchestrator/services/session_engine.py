"""The session engine's steps: plan a RUNNING session, move its plan on, end it, and
bring its tasks in line with what the operator decided (pause, stop, cancel).

Every step reads the database, decides, and writes in one transaction under the
session's family lock, so steps are idempotent: a step repeated after a crash, or taken
by two replicas at once, changes nothing the second time. The loop that calls them, and
the verification command, live in ``runtime/``.

This module is the step itself, composing the parts, each in a module of its own:
ownership leases (``session_ownership``), planning (``session_planning``), the
verification round (``session_review``), checkpoints (``session_checkpoints``), health
(``session_health``), the engine's own endings (``session_endings``) and the tasks of
paused and ended sessions (``session_halts``).
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from ..domain.effects import Effect
from ..domain.errors import NotFound
from ..domain.sessions.endings import SessionLimits
from ..domain.sessions.progress import PlanState
from ..domain.sessions.session import (
    Session,
    SessionPhase,
    running_at_most,
    running_seconds,
)
from ..domain.sessions.states import SessionState
from ..domain.tasks.task import Task
from .effects import EffectLedger
from .offer_gate import OfferGate
from .plan_advance import advance_plan, plan_now
from .ports import Clock, UnitOfWorkFactory, WorkingTrees
from .session_checkpoints import LastCheckpoint, SessionCheckpoints
from .session_endings import SessionEndings
from .session_halts import ENDED, LIVE_TASKS, SessionHalts
from .session_health import SessionHealth
from .session_ownership import SessionOwnership
from .session_planning import PlanDue, SessionPlanning
from .session_review import ReviewDue, SessionReview
from .session_schedule import RUNNING_STATES
from .sessions import SessionService

__all__ = ["PlanDue", "ReviewDue", "SessionEngine"]


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
        self._checkpoints = SessionCheckpoints(
            uow,
            sessions,
            clock=clock,
            interval=timedelta(seconds=checkpoint_interval_seconds),
            trees=trees,
            ledger=ledger,
        )
        self._uow = uow
        self._sessions = sessions
        self._clock = clock
        self._max_parallel = max_parallel_tasks
        self._ownership = SessionOwnership(uow, clock=clock)
        self.gate = gate if gate is not None else OfferGate()
        """Its steps make tasks READY through ``gate.opening`` (results too, shared with
        ``TaskLeases``); the dispatcher offers them through ``gate.offering``."""
        self._planning = SessionPlanning(
            uow,
            sessions,
            self._checkpoints,
            clock=clock,
            gate=self.gate,
            max_parallel_tasks=max_parallel_tasks,
        )
        self._review = SessionReview(uow, sessions, self._checkpoints, clock=clock)
        self._health = SessionHealth(uow, sessions)
        self._endings = SessionEndings(
            uow, sessions, SessionLimits(session_timeout_seconds), clock=clock
        )
        self._halts = SessionHalts(uow, clock=clock)

    async def to_visit(self) -> list[UUID]:
        """RUNNING sessions, and sessions whose tasks still need bringing in line."""
        async with self._uow.reader() as uow:
            running = await uow.sessions.ids_in([SessionState.RUNNING, SessionState.DEGRADED])
            live = await uow.tasks.sessions_with_tasks_in(LIVE_TASKS)
        return list(dict.fromkeys([*running, *live]))

    async def own(self, session_id: UUID, owner: str, lease_seconds: float) -> bool:
        """Take or renew this process's ownership lease of the session; whether it holds
        it. Taking over from a process whose lease ran out is an event."""
        return await self._ownership.own(session_id, owner, lease_seconds)

    async def disown(self, owner: str, session_id: UUID | None = None) -> None:
        await self._ownership.disown(owner, session_id)

    async def forget_owners(self) -> None:
        """After a restart of the only process a database may have (SQLite): every
        session is this process's to resume at once."""
        await self._ownership.forget_owners()

    async def step(self, session_id: UUID) -> ReviewDue | PlanDue | None:
        """Move the session on as far as it goes now; a ``ReviewDue`` when its
        verification is to run."""
        # What the step decides on, in one read: the session, how long it ran (its
        # history, only when the time since it started is past its limit: pauses only
        # take from that), its last checkpoint, and its plan's tasks.
        now = self._clock()
        async with self._uow.reader() as uow:
            found, latest, tasks = await uow.checkpoints.latest_with_plan(session_id)
            running = found is not None and found.status in RUNNING_STATES
            ran: float | None = None
            if running:
                assert found is not None
                ran = running_at_most(found, now)
                if not self._endings.surely_within_time(found, ran):
                    ran = running_seconds(await uow.sessions.transitions(session_id), now)
        if found is None:
            raise NotFound(f"Session {session_id} does not exist", {"session_id": str(session_id)})
        session = found
        if session.status in ENDED:
            # Read with the session: none live, nothing to cancel, no family lock to take.
            # A task made live by a commit this read missed is an event: another step.
            if any(task.status in LIVE_TASKS for task in tasks):
                await self._halts.cancel_tasks(session)
            return None
        if session.status == SessionState.PAUSED:
            await self._halts.release_running(session, "the session was paused")
            return None
        if not running:
            return None
        assert ran is not None
        ended = await self._endings.check_limits(session, ran)
        if ended:
            return None
        if session.phase in (None, SessionPhase.PLANNING):
            planned = await self._planning.step(session)
            if isinstance(planned, PlanDue):
                return planned
            if planned is not None and planned.moved:
                return None  # its first tasks opened with the plan: their events step it
            # Changed meanwhile, or a plan with nothing to open (carried over finished):
            # a look as at any step.
            session = await self._sessions.get(session_id)
            if session.phase != SessionPhase.EXECUTING:
                return None
            return await self._advance(session)
        took = await self._checkpoints.periodically(session, latest)
        if session.phase == SessionPhase.REVIEWING:
            return self._review.due(session)
        return await self._advance(session, None if took else LastCheckpoint(latest), tasks)

    async def review_due(self, due: ReviewDue) -> bool:
        """Whether the verification ``due`` asked for is still to be run: a round found
        due just before another task of this process (or another replica) recorded its
        verdict must not run the command a second time."""
        return await self._review.still_due(due)

    async def record_review(
        self, session_id: UUID, review_round: int, passed: bool, output: str
    ) -> Session:
        """The verification's verdict: COMPLETED, another round of work, or
        PARTIALLY_COMPLETED when no round is left."""
        return await self._review.record(session_id, review_round, passed, output)

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
        await self._planning.record(session_id, answer, failure, (tokens_used, cost_usd))

    async def finish_checkpoint(self, effect: Effect) -> None:
        """Finish a checkpoint a dead process left PENDING (``EffectRecovery``)."""
        await self._checkpoints.finish(effect)

    async def _advance(
        self,
        session: Session,
        last: LastCheckpoint | None = None,
        tasks: list[Task] | None = None,
    ) -> ReviewDue | None:
        """``last``: the session's last checkpoint as the step read it, if nothing took
        one since; ``tasks``: its tasks as the step read them with it (else read here)."""
        # A look first: after a result (which moved the plan in its own transaction) there
        # is mostly nothing to move, and then no write, nor the family's lock, is needed.
        # It judges by the session as the step read it: the write re-reads it under the
        # family's lock.
        async with self._uow.reader() as uow:
            look = await plan_now(
                uow, session.id, default_parallel=self._max_parallel, session=session, tasks=tasks
            )
        advanced = look[0] if look is not None else None
        if look is not None and look[1]:
            async with self.gate.opening(), self._uow() as uow:
                await uow.tasks.lock_family(session.id)
                advanced = await advance_plan(
                    uow, session.id, self._clock(), default_parallel=self._max_parallel
                )
                await uow.commit()
        if advanced is None:
            return None  # its budget is spent (the next step ends it), or it moved on
        progress = advanced.progress
        await self._checkpoints.after_finished_tasks(advanced, last)
        if advanced.moved:
            return None  # the plan moved: its events call for another step
        if progress.state == PlanState.STUCK and not progress.finished:
            # Straight to FAILED (DEGRADED may go there): a detour through RUNNING, for
            # a task that failed while its provider was down, would only be noise.
            await self._endings.give_up(session, progress)
            return None
        await self._health.check(session, advanced.tasks)
        if progress.state == PlanState.DONE:
            return await self._review.finish_plan(session, progress)
        if progress.state == PlanState.STUCK:
            await self._endings.give_up(session, progress)
        return None
