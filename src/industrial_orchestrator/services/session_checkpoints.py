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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog

from ..domain.effects import (
    CHECKPOINT_PAYLOAD,
    Effect,
    EffectKind,
    checkpoint_key,
    pending_effect,
)
from ..domain.errors import Conflict, NotFound, OrchestratorError
from ..domain.sessions.checkpoint import Checkpoint, CheckpointEntry
from ..domain.sessions.checkpoint_schedule import PeriodicCheckpoints, repeats
from ..domain.sessions.progress import Progress, progress_of
from ..domain.sessions.session import Session
from ..domain.tasks.task import Task, TaskStatus
from .effects import EffectLedger
from .plan_advance import Advanced, tasks_of
from .ports import Clock, UnitOfWork, UnitOfWorkFactory, WorkingTrees
from .running_attempts import running_attempts
from .sessions import SessionService

# The engine's logger, as before the engine was split: log queries go by its name.
log = structlog.get_logger("industrial_orchestrator.services.session_engine")


@dataclass(frozen=True, slots=True)
class LastCheckpoint:
    """The session's last checkpoint as the step read it (None: it has none yet), handed
    on so that the step's checkpoints need not read it again."""

    checkpoint: Checkpoint | None


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

    async def periodically(self, session: Session, latest: Checkpoint | None) -> bool:
        """A checkpoint every ``checkpoint_interval_seconds`` while it runs, unless it
        would repeat the last one (``domain.sessions.checkpoint_schedule``): then only the look is
        recorded. ``latest``: its last checkpoint, as the step read it. Whether it was
        time for one (``latest`` may be out of date since)."""
        now = self._clock()
        last = latest.created_at if latest else None
        if not self._periodic.due(
            last=last, started=session.started_at, now=now, checked=session.checkpoint_checked_at
        ):
            return False
        async with self._uow.reader() as uow:
            tasks = await tasks_of(uow, session.id)
            in_flight = await _in_flight(uow, tasks)
        if (
            latest is not None
            and repeats(latest.data, _data(session, tasks, in_flight))
            and not await self._tree_changed(session, latest)
        ):
            async with self._uow() as uow:
                await uow.sessions.checkpoint_checked(session.id, now)
                await uow.commit()
            return True
        seq = latest.seq if latest else 0
        moment = _Moment("periodic", None, f"periodic-after:{seq}")
        await self._record(session, tasks, in_flight, [moment])
        return True

    async def _tree_changed(self, session: Session, latest: Checkpoint) -> bool:
        """Whether the session's files moved on from its last checkpoint's commit (as
        far as anyone can tell: a checkpoint without a commit, or git failing, says so)."""
        if self._trees is None or session.worktree is None:
            return False
        commit = latest.data.get("commit")
        if not isinstance(commit, str):
            return True
        try:
            return await self._trees.changed_since(Path(session.worktree.path), commit)
        except OrchestratorError:
            return True

    async def after_finished_tasks(
        self, advanced: Advanced, last: LastCheckpoint | None = None
    ) -> None:
        """One automatic checkpoint after each finished task not yet in one, once the
        files the tasks delivered are written (a checkpoint without them would lie).
        Several found at once are taken together: one commit of the tree (it is the same
        tree for all of them), the checkpoints written in one transaction. They hold the
        session and its tasks as the step that found them read them; ``last``: the last
        checkpoint as the step read it, if nothing took one since (else it is read)."""
        session = advanced.session
        async with self._uow.reader() as uow:
            if last is not None:
                latest = last.checkpoint
            else:
                latest = await uow.checkpoints.latest(session.id)
            moments = _unrecorded(advanced.progress, latest)
            if not moments:
                return
            # Asked before the tree is looked at (``_at_clean_head``): files written after
            # this are another task's. A commit asks again in its promise's statement.
            promised = await uow.effects.pending(session_id=session.id)
            if any(effect.kind == EffectKind.WORKSPACE_WRITE for effect in promised):
                raise _files_unwritten(session.id)
            in_flight = await _in_flight(uow, advanced.tasks)
        if await self._at_clean_head(
            session, advanced.tasks, in_flight, moments, (LastCheckpoint(latest), promised)
        ):
            return
        if not await self._record(
            session, advanced.tasks, in_flight, moments, unless_writes_pending=True
        ):
            raise _files_unwritten(session.id)

    async def _at_clean_head(
        self,
        session: Session,
        tasks: list[Task],
        in_flight: dict[str, Any],
        moments: Sequence[_Moment],
        known: tuple[LastCheckpoint, Sequence[Effect]] | None,
    ) -> bool:
        """Checkpoints of a tree in which nothing changed since its last commit (after
        tasks that changed no file: a review, a test run, a no-op agent) name the
        commit the tree already is: no empty commit on the session's
        branch, and nothing done outside the database, so no promise in the ledger.
        Recorded only if no checkpoint came after the last one and the session is open,
        else ``Conflict``: a race lost. ``known``: the last checkpoint and the session's
        PENDING effects as the caller read them (else read here). False, nothing
        recorded, when the tree has something to commit (or there is no tree), or when
        a checkpoint of one of the moments is promised already (a dead process's: its
        commit, perhaps made, is settled by its key, or it would be recorded twice)."""
        if self._trees is None or session.worktree is None:
            return False
        try:
            head = await self._trees.clean_head(Path(session.worktree.path))
        except OrchestratorError:  # a tree git cannot read here: the promise's way says so
            return False
        if head is None:
            return False
        if known is None:
            async with self._uow.reader() as uow:
                latest = await uow.checkpoints.latest(session.id)
                promised: Sequence[Effect] = await uow.effects.pending(session_id=session.id)
        else:
            latest, promised = known[0].checkpoint, known[1]
        keys = {checkpoint_key(session.id, m.moment) for m in moments}
        if any(effect.key in keys for effect in promised):
            return False
        branch = session.worktree.branch
        entries = [
            CheckpointEntry(
                m.label,
                m.reason,
                {**_data(session, tasks, in_flight, m.finished), "branch": branch, "commit": head},
            )
            for m in moments
        ]
        await self._sessions.add_checkpoints(
            session.id, entries, after_seq=latest.seq if latest else 0
        )
        return True

    async def take(
        self,
        session_id: UUID,
        label: str,
        reason: str | None,
        *,
        moment: str,
        finished: dict[str, Any] | None = None,
        known: tuple[Session, list[Task]] | None = None,
    ) -> None:
        """A checkpoint of the session as it is now. ``moment`` names what it is taken
        for (unique in the session): its commit is an effect under that key, so taking
        the same moment's checkpoint again (after a crash) makes neither a second commit
        nor a second checkpoint. A tree with nothing to commit makes neither commit nor
        effect: the checkpoint names its HEAD (``_at_clean_head``). ``known``: the
        session and its tasks as the caller has just committed them, with none RUNNING
        (else they are read)."""
        if known is not None and not any(t.status == TaskStatus.RUNNING for t in known[1]):
            found: Session | None = known[0]
            tasks = known[1]
            in_flight: dict[str, Any] = {}
        else:
            async with self._uow.reader() as uow:
                found = await uow.sessions.get(session_id)
                tasks = await tasks_of(uow, session_id)
                in_flight = await _in_flight(uow, tasks)
        session = found
        if session is None:
            return
        moments = [_Moment(label, reason, moment, finished)]
        try:
            if await self._at_clean_head(session, tasks, in_flight, moments, None):
                return
        except Conflict:  # outrun, or the session ended: the promise's way settles it
            pass
        await self._record(session, tasks, in_flight, moments)

    async def _record(
        self,
        session: Session,
        tasks: list[Task],
        in_flight: dict[str, Any],
        moments: Sequence[_Moment],
        *,
        unless_writes_pending: bool = False,
    ) -> bool:
        """Checkpoints of the session as given, one per moment, in order. With
        ``unless_writes_pending``, none while files a task delivered are still to be
        written into the tree (its commit would lack them), and False."""
        session_id = session.id

        def data_of(moment: _Moment) -> dict[str, Any]:
            return _data(session, tasks, in_flight, moment.finished)

        if self._trees is None or session.worktree is None:
            # A session closed meanwhile has its checkpoints closed: nothing to add.
            with contextlib.suppress(Conflict):
                await self._sessions.add_checkpoints(
                    session_id,
                    [CheckpointEntry(m.label, m.reason, data_of(m)) for m in moments],
                )
            return True
        assert self._ledger is not None
        branch = session.worktree.branch
        entries = await self._ledger.begin_all(
            [
                pending_effect(
                    checkpoint_key(session_id, m.moment),
                    EffectKind.CHECKPOINT_COMMIT,
                    now=self._clock(),
                    session_id=session_id,
                    detail={
                        "label": m.label,
                        "reason": m.reason,
                        CHECKPOINT_PAYLOAD: {**data_of(m), "branch": branch},
                    },
                )
                for m in moments
            ],
            unless_writes_pending=session_id if unless_writes_pending else None,
        )
        if entries is None:
            return False
        tree = Path(session.worktree.path)
        fresh: list[Effect] = []
        for effect, new in entries:
            if effect.is_done:
                continue
            if new:
                fresh.append(effect)
            else:  # an earlier try's: its commit may have been made
                await self._commit([effect], tree, resumed=True)
        if fresh:
            await self._commit(fresh, tree, resumed=False)
        return True

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
        await self._commit([effect], Path(session.worktree.path), resumed=True)

    async def _commit(self, effects: Sequence[Effect], tree: Path, *, resumed: bool) -> None:
        """The checkpoints' one commit (the one made before a crash, found by the key of
        the one effect resumed, or a new one), then the checkpoints naming it, each marked
        DONE with it, in one transaction."""
        assert self._trees is not None
        assert self._ledger is not None
        labels = [str(effect.detail.get("label") or "checkpoint") for effect in effects]
        kind = effects[0].kind
        commit: str | None = None
        try:
            # An earlier try may have been cut off after the commit: look for it first.
            commit = await self._trees.find_commit(tree, effects[0].key) if resumed else None
            if commit is None:
                self._ledger.reached("effects.recorded", kind)
                # The subject names the last; the body the others, taken at the same time.
                message = "\n".join(
                    [f"checkpoint: {labels[-1]}", *(["", *labels[:-1]] if labels[1:] else [])]
                )
                commit = await self._trees.commit(tree, message, keys=[e.key for e in effects])
                self._ledger.reached("effects.performed", kind)
        except OrchestratorError as exc:
            log.warning(
                "checkpoint_commit_failed", session_id=str(effects[0].session_id), error=str(exc)
            )
        session_id = effects[0].session_id
        assert session_id is not None
        entries = [_entry(effect, commit) for effect in effects]
        try:
            await self._sessions.add_checkpoints(session_id, entries)
            return
        except Conflict:
            if len(entries) == 1:
                await self._not_recorded(effects[0], commit)
                return
        # One of them was finished elsewhere, or the session ended: each on its own.
        for effect, entry in zip(effects, entries, strict=True):
            try:
                await self._sessions.add_checkpoints(session_id, [entry])
            except Conflict:
                await self._not_recorded(effect, commit)

    async def _not_recorded(self, effect: Effect, commit: str | None) -> None:
        """The session ended meanwhile (its checkpoints are closed), or another process
        finished this effect first."""
        assert self._ledger is not None
        await self._ledger.finish(
            effect, {"commit": commit, "recorded": False}, drop=[CHECKPOINT_PAYLOAD]
        )


def _files_unwritten(session_id: UUID) -> Conflict:
    """A finished task's files are still being written into the session's tree: its
    checkpoint would lack them, and the plan must not end before they are there. The
    engine steps the session again shortly (a race lost, not a failure)."""
    return Conflict(
        "Files a finished task delivered are still being written; stepped again shortly",
        {"session_id": str(session_id)},
    )


@dataclass(frozen=True, slots=True)
class _Moment:
    label: str
    reason: str | None
    moment: str
    """What it is taken for, unique in the session: its effect's key."""
    finished: dict[str, Any] | None = None
    """The tasks it records as finished; None: those finished now."""


def _data(
    session: Session,
    tasks: list[Task],
    in_flight: dict[str, Any],
    finished: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a checkpoint holds: the session's phase and usage, its tasks, the work in
    flight, and the tasks it records as finished (None: those finished now)."""
    if finished is None:
        finished = {
            str(t.id): {"title": t.title, "summary": t.result_summary}
            for t in progress_of(tasks).finished
        }
    return {
        "phase": session.phase.value if session.phase else None,
        "review_round": session.review_round,
        "finished_tasks": finished,
        "tasks": {str(t.id): t.status.value for t in tasks},
        "in_flight": in_flight,
        "tokens_used": session.tokens_used,
        "cost_usd": session.cost_usd,
    }


def _unrecorded(progress: Progress, latest: Checkpoint | None) -> list[_Moment]:
    """A moment for each finished task the latest checkpoint does not have, each
    recording the tasks finished up to it."""
    recorded = set((latest.data.get("finished_tasks") or {}) if latest else {})
    done: dict[str, Any] = {}
    moments: list[_Moment] = []
    for task in progress.finished:
        done[str(task.id)] = {"title": task.title, "summary": task.result_summary}
        if str(task.id) not in recorded:
            moments.append(
                _Moment(
                    f"after task: {task.title}"[:200],
                    task.result_summary,
                    f"after-task:{task.id}",
                    dict(done),
                )
            )
    return moments


async def _in_flight(uow: UnitOfWork, tasks: list[Task]) -> dict[str, Any]:
    """Which agent holds which task, on which attempt: what resuming needs to recognise
    (and fence off) work that was in flight."""
    return {
        str(task_id): {
            "attempt": attempt.attempt,
            "agent_id": str(attempt.agent_id),
            "lease_expires_at": attempt.expires_at.isoformat(),
        }
        for task_id, attempt in (await running_attempts(uow, tasks)).items()
    }


def _entry(effect: Effect, commit: str | None) -> CheckpointEntry:
    data = dict(effect.detail.get(CHECKPOINT_PAYLOAD) or {})
    if commit is not None:
        data["commit"] = commit
    reason = effect.detail.get("reason")
    return CheckpointEntry(
        str(effect.detail.get("label") or "checkpoint"),
        str(reason) if reason is not None else None,
        data,
        effect,
    )
