"""The session runner: the loop inside ``orchestrator serve`` that moves RUNNING sessions
on (``SessionEngine.step``) and runs verification commands.

Stepping is work-driven (``services.session_schedule``): a round steps only the sessions
that something happened to since the last round (read from the event log from a cursor,
so another replica's commits count as much as this one's), those whose timer is due
(time limit, periodic checkpoint: ``next_due_at`` on the session, taken once by its
owner), those whose last step was deferred, and those no live process owns. A session
nobody touches costs nothing until its timer; the first round after a start looks at
every session that may need the engine. A session that only results touched since a
step it had less than ``ENGINE_COALESCE_SECONDS`` ago, with its plan still going, waits
until that long after that step and takes them in at once (``_coalesced``). Rounds run
on every wake-up of the event bus and at least every ``ENGINE_TICK_SECONDS``, and hand
what they find to step workers that step sessions as they come (no round waits for its
slowest step; one session is never stepped by two workers at once). A wake-up names the
sessions its commits call to step (``domain.sessions.stepping.steps_called_by``): a round
woken only by news of sessions another live process holds, or by news that calls for no
step (a lease, a checkpoint, a log line), does not read the log; the tick always does.

The steps themselves are database transactions and idempotent, and a session is stepped
only by the process that holds its ownership lease (renewed for all of a process's
sessions in one statement); what happens to a session another process was found to hold
is left to that process until its lease would have run out (or the renewal round finds
the session without an owner). A verification command, the one step with effects outside
the database, runs under a lock so that only one replica runs it at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID, uuid4

import structlog

from ..coordination.event_bus import EventBus
from ..coordination.locks import Lock, LockUnavailable
from ..domain.errors import OrchestratorError, WorkspaceGone, WorkspaceUnusable
from ..domain.events import LogStream
from ..domain.sessions.session import Actor, Session, WorktreeBinding
from ..domain.sessions.states import SessionState
from ..domain.tasks.workspaces import session_workspace
from ..services.ports import Planner, ProposedPlan, TreeBinding, WorkingTrees
from ..services.session_engine import PlanDue, ReviewDue, SessionEngine
from ..services.session_schedule import SessionSchedule
from ..services.sessions import SessionService
from .cancellation import finish, stop_if_cancelled
from .verification import Verifier

log = structlog.get_logger("industrial_orchestrator.runtime.session_runner")

_PARALLEL_STEPS = 8
_STOP = UUID(int=0)
"""Tells a step worker to stop."""
# After a step that failed unexpectedly, the session is looked at again this much later.
_FAILED_STEP_RETRY_SECONDS = 5.0
# A timer is acted on this much after it is due, so that the limit it stands for (a
# deadline) has passed when the step compares.
_TIMER_SLACK_SECONDS = 0.05
# Rounds in a row a session's tree may fail to be made before the session is given up.
_TREE_TRIES = 5
# A round woken by a commit waits this long first, so that a burst of commits (a busy
# fleet commits every few milliseconds) is read in one look at the log, not one each.
_COALESCE_SECONDS = 0.02


class SessionRunner:
    def __init__(
        self,
        engine: SessionEngine,
        schedule: SessionSchedule,
        sessions: SessionService,
        verifier: Verifier,
        bus: EventBus,
        lock: Lock,
        *,
        tick_seconds: float,
        artifacts_home: Path,
        lease_seconds: float,
        single_process: bool,
        trees: WorkingTrees | None = None,
        planner: Planner | None = None,
        coalesce_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._planner = planner
        self._monotonic = monotonic
        self._plans: dict[UUID, asyncio.Task[None]] = {}
        self._trees = trees
        self._bound: set[UUID] = set()
        self._tree_failures: dict[UUID, int] = {}
        self._engine = engine
        self._schedule = schedule
        self._sessions = sessions
        self._verifier = verifier
        self._bus = bus
        self._lock = lock
        self._tick = tick_seconds
        self._home = artifacts_home
        self._lease = lease_seconds
        self._single_process = single_process
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self._loop: asyncio.Task[None] | None = None
        self._reviews: dict[UUID, asyncio.Task[None]] = {}
        self._held: dict[UUID, float] = {}  # session -> until when this process owns it
        self._cursor: int | None = None  # the last event looked at; None: not yet
        # Session -> when to look at it again (monotonic): after a failed step, or when
        # another process's lease on it would have run out. This process's own.
        self._retries: dict[UUID, float] = {}
        # Session -> when the timer this process kept on it (``next_due_at``) is due
        # (monotonic): tells a round when the database has a timer to hand over.
        self._timers: dict[UUID, float] = {}
        self._again: set[UUID] = set()  # sessions to look at in the next round
        self._foreign: set[UUID] = set()  # held by another process when last tried
        # Session -> until when (monotonic) another process's lease on it holds, as far
        # as this one knows: what happens to it is that process's to step. (The event
        # log is everybody's: without this, every event of a session another process
        # runs would cost this one a write that fails to take it.)
        self._elsewhere: dict[UUID, float] = {}
        self._next_renewal = 0.0
        # Sessions waiting for a step worker, being stepped, and touched again while
        # being stepped (stepped once more right after).
        self._queue: asyncio.Queue[UUID] = asyncio.Queue()
        self._queued: set[UUID] = set()
        self._stepping: set[UUID] = set()
        self._redo: set[UUID] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        # Session -> when its last step began (monotonic), while that is less than
        # ``coalesce_seconds`` ago: results within it wait for one step (``_coalesce``).
        self._coalesce = coalesce_seconds
        self._stepped: dict[UUID, float] = {}

    async def start(self, *, rounds: bool = True) -> None:
        """Start the step workers and the loop of rounds; without ``rounds``, the workers
        only, and rounds are ``run_once`` calls (the fast tests run them on a fake clock)."""
        if self._single_process:
            # Nobody else can serve this database: whatever ran before is gone.
            await self._engine.forget_owners()
        self._workers = [
            asyncio.create_task(self._step_worker(), name=f"session-step-{n}")
            for n in range(_PARALLEL_STEPS)
        ]
        if rounds:
            self._loop = asyncio.create_task(self._run(), name="session-runner")

    @property
    def idle(self) -> bool:
        """No session waits for a step or is being stepped, planned or verified."""
        return not (self._queued or self._stepping or self._redo or self._plans or self._reviews)

    async def close(self) -> None:
        """Stop after the steps in progress (a step cut off mid-transaction could leave
        a connection holding the database's write lock), then give the sessions up."""
        self._stopping.set()
        if self._loop is not None:
            await finish([self._loop])
        # What waits is not stepped (the next start looks at every session); a step
        # under way finishes, then its worker takes the sentinel and stops.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queued.clear()
        for _ in self._workers:
            self._queue.put_nowait(_STOP)
        await finish(self._workers)
        self._loop = None
        self._workers = []
        reviews = [*self._reviews.values(), *self._plans.values()]
        for review in reviews:
            review.cancel()
        for review in reviews:
            with contextlib.suppress(asyncio.CancelledError):
                await review
        self._reviews.clear()
        self._plans.clear()
        if not self._single_process:
            # Let another replica take the sessions over at once, not when the leases
            # expire (a single-process database is taken over at the next start).
            with contextlib.suppress(OrchestratorError, OSError):
                await self._engine.disown(self.owner)

    async def run_once(self, *, look: bool = True) -> None:
        """One round: hand every session that needs the engine to the step workers.
        Without ``look``, the log is not read this round (the news since the last look
        named only sessions other processes hold: ``_needs_a_look``); the next look
        reads it from where the last one stopped."""
        for session_id in await self._due(look=look):
            self._enqueue(session_id)

    def _enqueue(self, session_id: UUID) -> None:
        if session_id in self._stepping:
            self._redo.add(session_id)  # what it is being stepped for may be too late
        elif session_id not in self._queued:
            self._queued.add(session_id)
            self._queue.put_nowait(session_id)

    async def _step_worker(self) -> None:
        """Steps sessions as they come, several workers side by side: a session is not
        held up by a round of others (no round waits for its slowest step), and one
        session is never stepped by two workers at once."""
        while True:
            session_id = await self._queue.get()
            if session_id == _STOP:
                return
            self._queued.discard(session_id)
            self._stepping.add(session_id)
            try:
                await self._step(session_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # one session's trouble is not the others'
                log.exception("engine_step_failed", session_id=str(session_id))
                self._retries[session_id] = self._monotonic() + _FAILED_STEP_RETRY_SECONDS
            finally:
                self._stepping.discard(session_id)
            if session_id in self._redo:
                self._redo.discard(session_id)
                self._enqueue(session_id)

    async def _due(self, *, look: bool = True) -> set[UUID]:
        """The sessions this round must look at (module docstring). The database is read
        first: a round cut short by it (an outage) forgets nothing for the next one."""
        now = self._monotonic()
        cursor = self._cursor
        due: set[UUID] = set()
        if cursor is None:
            # First round: whatever may need the engine (after a restart, a takeover).
            cursor = await self._schedule.log_position()
            due = set(await self._engine.to_visit())
        elif look:
            touched, cursor = await self._schedule.touched(cursor)
            due = {s for s in touched.sessions if self._elsewhere.get(s, 0.0) <= now}
            due -= await self._coalesced(due & touched.routine, now)
            if touched.fleet_changed:
                # Every process hears of the fleet: each looks at its own sessions only.
                waiting = await self._schedule.waiting_on_agents()
                due.update(s for s in waiting if self._elsewhere.get(s, 0.0) <= now)
        renewal = now >= self._next_renewal
        if renewal:
            # Every lease this process holds, renewed in one statement; and the running
            # sessions nobody holds (new, or their owner died) are taken up.
            held = await self._schedule.renew_owned(self.owner, self._lease)
            unowned = await self._schedule.unowned()
            due.update(unowned)
            self._elsewhere = {
                s: at for s, at in self._elsewhere.items() if at > now and s not in unowned
            }
            self._held = {session_id: now + self._lease / 2 for session_id in held}
            self._next_renewal = now + self._lease / 3
        if renewal or any(at <= now for at in self._timers.values()):
            # Last of the reads: it takes the timers it returns (nothing after it fails).
            taken = set(await self._schedule.take_due(self.owner))
            due.update(taken)
            # A timer taken is gone from the database even where this process expected
            # it a little later (its moment is kept after the write): its step must set
            # the next one, which ``_set_timer`` skips for a session it has a moment of.
            self._timers = {s: at for s, at in self._timers.items() if at > now and s not in taken}
        self._cursor = cursor
        due |= self._again
        self._again = set()
        for session_id, at in list(self._retries.items()):
            if at <= now:
                due.add(session_id)
                del self._retries[session_id]
        return due

    async def _coalesced(self, routine: set[UUID], now: float) -> set[UUID]:
        """Of the sessions only results touched, those stepped less than
        ``coalesce_seconds`` ago whose plan goes on: each waits (a retry) until that long
        after its last step, and is stepped once then for every result until then. Under
        load this is one step, and one checkpoint commit, for several results (a busy
        process's queue did the same by accident); a plan's next tasks do not wait for
        it (a result makes them READY). A plan's last result is stepped at once."""
        if self._coalesce <= 0:
            return set()
        self._stepped = {s: at for s, at in self._stepped.items() if now - at < self._coalesce}
        recent = [s for s in routine if s in self._stepped]
        if not recent:
            return set()
        waiting = await self._schedule.with_open_tasks(recent)
        for session_id in waiting:
            at = self._stepped[session_id] + self._coalesce
            self._retries[session_id] = min(self._retries.get(session_id, at), at)
        return waiting

    async def _step(self, session_id: UUID) -> None:
        self._stepped[session_id] = self._monotonic()
        try:
            if not await self._owns(session_id):
                self._held_elsewhere(session_id)
                return
            self._foreign.discard(session_id)
            self._elsewhere.pop(session_id, None)
            await self._prepare_workspace(session_id)
            due = await self._engine.step(session_id)
            await self._set_timer(session_id)
        except OrchestratorError as exc:  # a race lost: the next round looks again
            log.info("engine_step_deferred", session_id=str(session_id), reason=exc.message)
            self._again.add(session_id)
            return
        if isinstance(due, PlanDue):
            if session_id not in self._plans:
                self._plans[session_id] = asyncio.create_task(
                    self._propose(due), name=f"plan-{session_id}"
                )
        elif due is not None and session_id not in self._reviews:
            self._reviews[session_id] = asyncio.create_task(
                self._review(due), name=f"review-{session_id}"
            )

    def _held_elsewhere(self, session_id: UUID) -> None:
        """Another live process runs the session: what happens to it is left to that
        process until its lease would have run out. Tried once more then (a step it
        owes, e.g. closing the tasks of a session that ended, is not lost if it died);
        after that, a running session left ownerless is found by the renewal round's
        look for unowned sessions."""
        self._timers.pop(session_id, None)
        self._elsewhere[session_id] = self._monotonic() + self._lease
        if session_id in self._foreign:
            self._foreign.discard(session_id)
            return
        self._foreign.add(session_id)
        self._retries[session_id] = self._monotonic() + self._lease + _TIMER_SLACK_SECONDS

    async def _set_timer(self, session_id: UUID) -> None:
        """When to step the session next if nothing happens to it, kept on the session
        (``next_due_at``). A timer already set is kept: a step at a time when nothing is
        due costs one step and sets the next, while reading the time limit and the last
        checkpoint after every step would cost three reads and a write each time."""
        if session_id in self._timers:
            return
        wait = await self._schedule.set_timer(session_id, slack_seconds=_TIMER_SLACK_SECONDS)
        if wait is not None:
            self._timers[session_id] = self._monotonic() + max(0.0, wait) + _TIMER_SLACK_SECONDS

    async def _owns(self, session_id: UUID) -> bool:
        """Whether this process runs the session. Held leases are renewed together each
        renewal round (``_due``), not one by one."""
        now = self._monotonic()
        if self._held.get(session_id, 0.0) > now:
            return True
        if not await self._engine.own(session_id, self.owner, self._lease):
            self._held.pop(session_id, None)
            return False
        self._held[session_id] = now + self._lease / 2
        return True

    def _needs_a_look(self, steps: set[UUID] | None) -> bool:
        """Whether news that named ``steps`` (None: it did not say) calls for a look at the
        log: it may concern a session this process holds or nobody is known to hold. News
        of sessions another live process holds is that process's (``_held_elsewhere``): a
        look would find them and leave them."""
        if steps is None:
            return True
        now = self._monotonic()
        return any(self._elsewhere.get(session_id, 0.0) <= now for session_id in steps)

    async def _run(self) -> None:
        async with self._bus.subscribe(keeps_steps=True) as wakeup:
            look = True
            while not self._stopping.is_set():
                owed = False
                try:
                    await self.run_once(look=look)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let the loop die; the next round tries again
                    stop_if_cancelled()
                    owed = True  # what this round missed is read by the next one
                    log.exception("engine_round_failed")
                if self._stopping.is_set():
                    return
                rung = await wakeup.wait(self._tick)
                if rung:
                    await asyncio.sleep(_COALESCE_SECONDS)
                # The tick looks whatever was said: a wake-up lost on the way is no loss.
                look = owed or not rung or self._needs_a_look(wakeup.take_steps())

    async def _prepare_workspace(self, session_id: UUID) -> None:
        """Give a session that is about to run its own working tree (once per process)."""
        if session_id in self._bound:
            return
        session = await self._sessions.get(session_id)
        if session.is_terminal or session.status == SessionState.PENDING:
            return
        if self._trees is None:
            await asyncio.to_thread(
                session_workspace(session, self._home).mkdir, parents=True, exist_ok=True
            )
            self._bound.add(session_id)
            return
        try:
            binding = await self._tree_for(session)
        except WorkspaceUnusable as exc:
            log.error("workspace_unusable", session_id=str(session_id), error=exc.message)
            missing = session.workspace is not None and not await asyncio.to_thread(
                Path(session.workspace).is_dir
            )
            failures = self._tree_failures.get(session_id, 0) + 1
            self._tree_failures[session_id] = failures
            if not missing and not isinstance(exc, WorkspaceGone) and failures < _TREE_TRIES:
                raise  # git having a bad moment: the next round tries again
            self._tree_failures.pop(session_id, None)
            with contextlib.suppress(OrchestratorError):
                await self._sessions.move(
                    session_id,
                    SessionState.ORPHANED,
                    reason=f"its workspace cannot be used: {exc.message}",
                    actor=Actor.SYSTEM,
                )
            raise
        if session.worktree is None:
            await self._sessions.bind_worktree(
                session_id,
                WorktreeBinding(str(binding.path), binding.branch, binding.base_commit),
                note=f"working in {binding.path} on branch {binding.branch} "
                f"(from {binding.base_commit[:12]})\n",
            )
        self._bound.add(session_id)
        self._tree_failures.pop(session_id, None)

    async def _tree_for(self, session: Session) -> TreeBinding:
        assert self._trees is not None
        origin = session.continues
        if session.worktree is None and origin and session.restored_from_checkpoint:
            # A retry or a fork goes on from the files of the checkpoint it starts from.
            checkpoint = await self._sessions.checkpoint(session.restored_from_checkpoint)
            commit = checkpoint.data.get("commit") if checkpoint else None
            if isinstance(commit, str):
                old = await self._trees.binding(origin)
                if old is None:
                    raise WorkspaceGone(
                        f"the working tree of session {origin}, which this session "
                        "continues, is gone",
                        {"session_id": str(origin)},
                    )
                return await self._trees.fork(old.path, commit, session.id, old.source)
        workspace = Path(session.workspace) if session.workspace else None
        return await self._trees.prepare(session.id, workspace)

    async def _propose(self, due: PlanDue) -> None:
        """Ask the architect for the plan, then plan with its answer (or the template)."""
        try:
            proposed: ProposedPlan | None = None
            failure: str | None = None
            if self._planner is None:
                failure = "no architect agent runs in this process; the template plans it"
            else:
                try:
                    session = await self._sessions.get(due.session_id)
                    await self._verifier.log(
                        due.session_id, LogStream.SYSTEM, "asking the architect for a plan\n"
                    )
                    proposed = await self._planner.propose(session, due.request)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failure = f"the architect could not plan: {type(exc).__name__}: {exc}"[:1000]
            await self._engine.record_plan(
                due.session_id,
                proposed.answer if proposed else None,
                failure,
                tokens_used=proposed.tokens_used if proposed else 0,
                cost_usd=proposed.cost_usd if proposed else 0.0,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("planning_failed", session_id=str(due.session_id))
        finally:
            self._plans.pop(due.session_id, None)
            self._again.add(due.session_id)  # whatever came of it, look again

    async def _review(self, due: ReviewDue) -> None:
        try:
            name = f"review:{due.session_id}"
            token: str | None = None
            try:
                token = await self._lock.acquire(name, self._verifier.timeout_seconds + 60)
                if token is None:
                    return  # another replica is verifying this session
            except LockUnavailable:
                log.warning("review_lock_unavailable", session_id=str(due.session_id))
            try:
                # Checked under the lock: the round may have been decided since it was due.
                if not await self._engine.review_due(due):
                    return
                passed, output = await self._verifier.verify(due)
                await self._engine.record_review(due.session_id, due.review_round, passed, output)
            finally:
                if token is not None:
                    with contextlib.suppress(LockUnavailable):
                        await self._lock.release(name, token)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("review_failed", session_id=str(due.session_id))
        finally:
            self._reviews.pop(due.session_id, None)
            self._again.add(due.session_id)  # whatever came of it, look again
