"""The checkpoints the engine takes of a running session: when (once planned, after each
finished task, at least every interval, at each verification verdict), what one holds
(the tasks and what is in flight), and its commit of the session's working tree.

A checkpoint with a working tree is an effect (``services/effects.py``): recorded PENDING
before its commit, marked DONE with the checkpoint row, and finished from the commit found
by its key when a process died in between. Recording the checkpoint row itself, with its
retention, is ``SessionService.add_checkpoint``'s (the operator's checkpoints use it too).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog

from ..domain.checkpoint_schedule import PeriodicCheckpoints
from ..domain.effects import (
    CHECKPOINT_PAYLOAD,
    Effect,
    EffectKind,
    checkpoint_key,
    pending_effect,
)
from ..domain.errors import Conflict, NotFound, OrchestratorError
from ..domain.session import Session
from ..domain.session_progress import Progress, progress_of
from ..domain.tasks import TaskStatus
from .effects import EffectLedger
from .plan_advance import tasks_of
from .ports import Clock, UnitOfWorkFactory, WorkingTrees
from .sessions import SessionService

# The engine's logger, as before the engine was split: log queries go by its name.
log = structlog.get_logger("industrial_orchestrator.services.session_engine")


class SessionCheckpoints:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sessions: SessionService,
        *,
        clock: Clock,
        interval: timedelta,
        trees: WorkingTrees | None = None,
        ledger: EffectLedger | None = None,
    ) -> None:
        if trees is not None and ledger is None:
            raise ValueError("checkpoint commits are effects: a ledger is needed with trees")
        self._uow = uow
        self._sessions = sessions
        self._clock = clock
        self._periodic = PeriodicCheckpoints(interval)
        self._trees = trees
        self._ledger = ledger

    async def periodically(self, session: Session) -> None:
        """A checkpoint at least every ``checkpoint_interval_seconds`` while it runs."""
        async with self._uow.reader() as uow:
            latest = await uow.checkpoints.latest(session.id)
        last = latest.created_at if latest else None
        if self._periodic.due(last=last, started=session.started_at, now=self._clock()):
            seq = latest.seq if latest else 0
            await self.take(session.id, "periodic", None, moment=f"periodic-after:{seq}")

    async def after_finished_tasks(self, session_id: UUID, progress: Progress) -> None:
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
            await self.take(
                session_id,
                f"after task: {task.title}"[:200],
                task.result_summary,
                finished=dict(done),
                moment=f"after-task:{task.id}",
            )

    async def take(
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
            await self._commit(effect, Path(session.worktree.path), resumed=not new)

    async def finish(self, effect: Effect) -> None:
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
        await self._commit(effect, Path(session.worktree.path), resumed=True)

    async def _commit(self, effect: Effect, tree: Path, *, resumed: bool) -> None:
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
