"""The verification round of a session whose plan is done: the engine moves it to
REVIEWING and asks for its ``verify_command`` to be run (``ReviewDue``); the runtime runs
it and ``record_review`` takes the verdict: COMPLETED, another round of work (a task to
fix what the command found), or PARTIALLY_COMPLETED when no round is left
(``domain/sessions/review_rounds.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

from ..domain.sessions.progress import Progress
from ..domain.sessions.review_rounds import Verdict, awaits_verdict, verdict
from ..domain.sessions.session import Actor, Session, SessionPhase
from ..domain.sessions.states import STATE_TABLE, SessionState
from ..domain.tasks import events as task_events
from ..domain.tasks.task import TaskStatus, TaskType, new_task, task_transition
from .session_phases import PhaseSteps, save_phase

MAX_FEEDBACK_CHARS = 4000


@dataclass(frozen=True, slots=True)
class ReviewDue:
    """The session's plan is done and its ``verify_command`` is to be run."""

    session_id: UUID
    command: str
    workspace: str | None
    review_round: int


class SessionReview(PhaseSteps):
    async def finish_plan(self, session: Session, progress: Progress) -> ReviewDue | None:
        """Every task is done: COMPLETED without a ``verify_command``, else REVIEWING and
        the verification due."""
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
            await save_phase(uow, session, reviewing, f"verifying with `{command}`")
            await uow.commit()
        return self.due(reviewing)

    def due(self, session: Session) -> ReviewDue | None:
        """The verification of a REVIEWING session; None when it has no command to run."""
        if session.options.verify_command is None:
            return None
        workspace = session.worktree.path if session.worktree else session.workspace
        return ReviewDue(
            session.id, session.options.verify_command, workspace, session.review_round
        )

    async def still_due(self, due: ReviewDue) -> bool:
        """Whether the verification ``due`` asked for is still to be run: a round found
        due just before another task of this process (or another replica) recorded its
        verdict must not run the command a second time."""
        session = await self._sessions.get(due.session_id)
        return not STATE_TABLE[session.status].terminal and awaits_verdict(
            session, due.review_round
        )

    async def record(
        self, session_id: UUID, review_round: int, passed: bool, output: str
    ) -> Session:
        """The verification's verdict: COMPLETED, another round of work, or
        PARTIALLY_COMPLETED when no round is left."""
        session = await self._sessions.get(session_id)
        if not awaits_verdict(session, review_round):
            return session  # decided already (another replica, or an operator)
        command = session.options.verify_command or ""
        outcome = verdict(
            passed=passed,
            review_round=session.review_round,
            max_review_rounds=session.options.max_review_rounds,
        )
        if outcome == Verdict.COMPLETED:
            await self._checkpoints.take(
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
        if outcome == Verdict.PARTIALLY_COMPLETED:
            await self._checkpoints.take(
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
            await save_phase(uow, session, back, "verification failed; fixing")
            await uow.commit()
        await self._checkpoints.take(
            session_id,
            "verification failed",
            f"round {back.review_round}: {tail[-500:]}",
            moment=f"verification-failed:{review_round}",
        )
        return back
