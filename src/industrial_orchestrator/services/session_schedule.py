"""What the runtime must step, and when: work-driven stepping's reads.

A round of the runtime looks only at the sessions that need it: those the event log
says something happened to since its last look (``domain.sessions.stepping``), those whose timer
is due (time limit, periodic checkpoint: ``next_due_at``, kept on the session and read
through an index on its owner), and those that no live process owns any more (their
owner died). None of these reads every running session; a session nobody touches
costs nothing until its next timer. Ownership leases are renewed for all of a process's
sessions in one statement, not one transaction per session.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from ..domain.sessions.checkpoint_schedule import PeriodicCheckpoints
from ..domain.sessions.endings import SessionLimits
from ..domain.sessions.session import running_seconds
from ..domain.sessions.states import SessionState
from ..domain.sessions.stepping import WATCHED, Touched, touched_by
from ..domain.tasks.task import TaskStatus
from .ports import Clock, UnitOfWorkFactory

RUNNING_STATES = (SessionState.RUNNING, SessionState.DEGRADED)
# A process keeps owning the sessions it steps while they are not over.
HELD_STATES = (SessionState.RUNNING, SessionState.DEGRADED, SessionState.PAUSED)
# A plan with a task in one of these is not over.
OPEN_TASKS = (TaskStatus.PENDING, TaskStatus.READY, TaskStatus.RUNNING)


class SessionSchedule:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        session_timeout_seconds: int,
        checkpoint_interval_seconds: float,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._limits = SessionLimits(session_timeout_seconds)
        self._checkpoints = PeriodicCheckpoints(timedelta(seconds=checkpoint_interval_seconds))

    async def log_position(self) -> int:
        """The newest event's id: where the next look at the log starts."""
        async with self._uow.reader() as uow:
            return await uow.events.last_id()

    async def touched(self, after_id: int) -> tuple[Touched, int]:
        """What happened since event ``after_id``, and the id to look after next time.
        The log is read up to where every id is settled, so nothing committed later has a
        smaller id than the one returned."""
        async with self._uow.reader() as uow:
            pairs, upto = await uow.events.touched(after_id, sorted(WATCHED))
        return touched_by(pairs), upto

    async def waiting_on_agents(self) -> list[UUID]:
        """Sessions whose health depends on who is online: DEGRADED ones, and running
        ones with a task waiting for an agent."""
        async with self._uow.reader() as uow:
            degraded = await uow.sessions.ids_in([SessionState.DEGRADED])
            waiting = await uow.tasks.sessions_with_tasks_in([TaskStatus.READY])
        return list(dict.fromkeys([*degraded, *waiting]))

    async def with_open_tasks(self, session_ids: Sequence[UUID]) -> set[UUID]:
        """Of ``session_ids``, those whose plan has tasks still to be done (not all done or
        failed): the others' last results call for a step at once."""
        async with self._uow.reader() as uow:
            return set(await uow.tasks.sessions_with_tasks_in(OPEN_TASKS, among=session_ids))

    async def renew_owned(self, owner: str, lease_seconds: float) -> list[UUID]:
        """Extend every lease ``owner`` holds on a session not over yet; those sessions."""
        until = self._clock() + timedelta(seconds=lease_seconds)
        async with self._uow.single() as uow:
            held = await uow.sessions.renew_owned(owner, HELD_STATES, until)
            await uow.commit()
        return held

    async def unowned(self) -> list[UUID]:
        """Running sessions no live process owns: new ones, or a dead owner's."""
        async with self._uow.reader() as uow:
            return await uow.sessions.unowned_in(RUNNING_STATES, self._clock())

    async def set_timer(self, session_id: UUID, *, slack_seconds: float = 0.0) -> float | None:
        """Keep on the session (``next_due_at``) when it next needs a step though nothing
        happens to it, ``slack_seconds`` after it is due; the seconds until then. None
        when it is not running: a timer left on it then is never taken (``take_due``
        takes running sessions' only), and a step of it writes nothing."""
        wait = await self.seconds_to_due(session_id)
        if wait is None:
            return None
        at = self._clock() + timedelta(seconds=max(0.0, wait) + slack_seconds)
        async with self._uow.single() as uow:
            await uow.sessions.set_next_due(session_id, at)
            await uow.commit()
        return wait

    async def take_due(self, owner: str) -> list[UUID]:
        """The running sessions ``owner`` holds whose timer is due, each taken once: the
        timers are cleared as they are read (the step sets the next)."""
        async with self._uow.single() as uow:
            due = await uow.sessions.take_due(owner, RUNNING_STATES, self._clock())
            await uow.commit()
        return due

    async def seconds_to_due(self, session_id: UUID) -> float | None:
        """How soon the session needs a step though nothing happens to it: its time
        limit (time spent running, pauses not counted) or its next periodic checkpoint.
        None when it is not running: an operator's resume is an event."""
        now = self._clock()
        async with self._uow.reader() as uow:
            session, latest = await uow.checkpoints.latest_with_session(session_id)
            if session is None or session.status not in RUNNING_STATES:
                return None
            ran = running_seconds(await uow.sessions.transitions(session_id), now)
        timeout = self._limits.timeout_of(session.options)
        due = now + timedelta(seconds=max(0.0, timeout - ran))
        checkpoint = self._checkpoints.next_at(
            last=latest.created_at if latest else None,
            started=session.started_at,
            checked=session.checkpoint_checked_at,
        )
        if checkpoint is not None:
            due = min(due, checkpoint)
        return (due - now).total_seconds()
