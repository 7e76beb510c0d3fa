"""Bringing a session's tasks in line with what the operator decided: an ended session's
unfinished tasks are cancelled, a paused session's tasks in flight are taken back from
their agents to wait, READY, for it to resume.
"""

from __future__ import annotations

from ..domain.sessions.session import Session
from ..domain.sessions.states import SessionState
from ..domain.tasks import events as task_events
from ..domain.tasks.task import TaskStatus, task_transition
from .lease_endings import release_attempt
from .plan_advance import tasks_of
from .ports import Clock, UnitOfWorkFactory

# Tasks of sessions in these states must not be worked on.
ENDED = frozenset(
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
LIVE_TASKS = (TaskStatus.PENDING, TaskStatus.READY, TaskStatus.RUNNING)


class SessionHalts:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def cancel_tasks(self, session: Session) -> None:
        """An ended session's unfinished tasks are cancelled; their agents' results will
        be refused (409 lease_lost)."""
        now = self._clock()
        async with self._uow() as uow:
            await uow.tasks.lock_family(session.id)
            tasks = await tasks_of(uow, session.id)
            for task in tasks:
                if task.status in LIVE_TASKS:
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

    async def release_running(self, session: Session, reason: str) -> None:
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
