"""Claims: leasing a READY task to the agent that asks for work.

A claim first looks without locks (most asks find nothing), then leases in a guarded
transaction: the task row moves only from the status and version it was read at, and
the agent's record only from the version the look used, so two agents racing for one
task, or one agent claiming twice at once, have exactly one winner.

Some waiting tasks are passed over for this agent: those learned routing leaves to a
clearly better idle rival (``domain.agents.records``), those the loop guard stopped this
agent on (``domain.tasks.loop_reroute``), and those that would edit files a running task of
their session edits, or start before their session's delivered files are written
(``domain.tasks.file_conflicts``).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog

from ..domain.agents.agent import Agent
from ..domain.agents.records import may_leave, tasks_to_leave
from ..domain.errors import Conflict
from ..domain.tasks import events as task_events
from ..domain.tasks.attempts import TaskAttempt
from ..domain.tasks.file_conflicts import overlap
from ..domain.tasks.lease_rules import agent_with_lease, check_accepting, lease_task
from ..domain.tasks.loop_reroute import barred_agents
from ..domain.tasks.task import Task, TaskStatus
from ..domain.tasks.workspaces import workspace_of
from .agent_records import load_records
from .lease_endings import RETRY_ROUNDS, not_registered, registered_agent
from .lease_policy import LeasePolicy
from .ports import Clock, LeaseRefused, NewLease, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.task_leases")

# How many waiting tasks a claimer with failures on record looks at, to pass over those
# it should leave to a clearly better idle agent.
_LOOK_AHEAD = 8
# Sessions whose worktree a process remembers for its claims (a few hundred bytes each).
_WORKTREES_KEPT = 10_000
# Tasks a process remembers it leased: more than a look finds (``_LOOK_AHEAD``) times the
# claims a process has in flight at once.
_TAKEN_KEPT = 4_096


@dataclass(frozen=True, slots=True)
class Assignment:
    task: Task
    attempt: TaskAttempt
    finished_dependencies: list[Task]
    workspace: Path


class TaskClaims:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock, policy: LeasePolicy) -> None:
        self._uow = uow
        self._clock = clock
        self._policy = policy
        self._worktrees: OrderedDict[UUID, Path] = OrderedDict()
        """Sessions' worktrees as bound: a binding is made once and never changes
        (``SessionRepository.bind_worktree``), so a session's claims read it once."""
        # Agents woken by one commit all look at the same tasks, and each would try the
        # ones the others took first, losing a statement on each. A look is older than
        # what this process leased since: those are passed over, and those a claim of
        # this process is leasing right now are tried last.
        self._taking: set[UUID] = set()
        """Tasks a claim of this process is leasing, until its transaction ends."""
        self._taken: OrderedDict[UUID, int] = OrderedDict()
        """Tasks this process leased lately, with the version each was leased from: a
        look that found one READY at that version (or before) read it before the lease,
        and no save from it can succeed."""

    async def claim(self, agent_id: UUID, *, agent: Agent | None = None) -> Assignment | None:
        """Lease the most urgent READY task ``agent_id`` can do, or None when there is
        none. Raises ``AgentNotAccepting`` when the agent is offline, busy or full.
        ``agent``: its record as the caller has just read it (the lease is written only if
        the record is still at that version); without it, the record is read with the
        look, in its statement. ``AgentNotRegistered`` when the agent is not registered.

        Learned routing applies to pulls too: a task of a type at which the agent has a
        clearly worse record than an idle, live rival is left to that rival for a while
        (``domain.agents.records.tasks_to_leave``); the agent gets the next task, or none.

        A task of a session that would edit files a RUNNING task of that session edits
        (its plan's ``files``, or what its earlier attempts delivered) waits until that
        one is done (``domain.tasks.file_conflicts``): the agent gets the next task, or none.

        A task the loop guard stopped this agent on goes to another capable agent
        (``domain.tasks.loop_reroute``): this one gets the next task, or none."""
        # A look without locks first: most asks (a long-poll woken by an unrelated
        # commit) find nothing, and must not queue up behind the writers to say so.
        async with self._uow.reader() as uow:
            if agent is None or agent.id != agent_id:
                # The record with the look, in one statement: the HTTP route does not
                # read it to authenticate, and a look after a wait needs it afresh.
                agent, waiting = await uow.tasks.claimable_for(agent_id, limit=_LOOK_AHEAD)
                if agent is None:
                    raise not_registered(agent_id)
                check_accepting(agent)
            else:
                check_accepting(agent)
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
            # Nothing to pass over: the first round leases one of the tasks the look
            # found, as the look read them, in its order, without looking again. The
            # guarded save refuses a task that changed since, and skips one another
            # claimer holds (agents woken by one commit all looked at the same tasks).
            looked_at = [] if leave or barred or held or guarded else waiting
        # The first round writes from the record the look used: the guarded save of the
        # agent refuses it if it changed since, and the next round reads it again.
        looked: Agent | None = agent
        for _ in range(RETRY_ROUNDS):
            now = self._clock()
            if looked_at and looked is not None:
                # Each try is one statement where the database can: no transaction
                # around them (``AttemptRepository.open``).
                with self._marking() as taking:
                    async with self._uow.single() as uow:
                        tried = await self._first_free(uow, looked, looked_at, now, taking)
                looked_at = []
                if isinstance(tried, Assignment):
                    return tried
                if tried is LeaseRefused.AGENT_CHANGED:
                    looked = None
                    continue  # the agent claimed in parallel; recount
                # none was free: look again, under locks
            async with self._uow() as uow:
                agent = looked if looked is not None else await registered_agent(uow, agent_id)
                looked = None
                check_accepting(agent)
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
                leased = await self._leased(uow, agent, candidates[:1], now=now)
                if isinstance(leased, Assignment):
                    return leased
                # another claimer took the task first (look again), or the agent claimed
                # in parallel (recount)
        raise Conflict("Too many concurrent claims; ask again", {"agent_id": str(agent_id)})

    async def _workspace(self, uow: UnitOfWork, task: Task) -> Path:
        """Where the task's work lands (``result_files.task_workspace``)."""
        bound = self._worktrees.get(task.session_id) if task.session_id else None
        if bound is not None:
            return bound
        session = await uow.sessions.get(task.session_id) if task.session_id else None
        if session is None or session.worktree is None:
            return workspace_of(task, session, self._policy.artifacts_home)
        self._worktrees[session.id] = Path(session.worktree.path)
        if len(self._worktrees) > _WORKTREES_KEPT:
            self._worktrees.popitem(last=False)
        return self._worktrees[session.id]

    @contextlib.contextmanager
    def _marking(self) -> Iterator[list[UUID]]:
        """The tasks a claim's transaction is taking, unmarked when it ends."""
        taking: list[UUID] = []
        try:
            yield taking
        finally:
            self._taking.difference_update(taking)

    async def _first_free(
        self,
        uow: UnitOfWork,
        agent: Agent,
        looked_at: Sequence[Task],
        now: datetime,
        taking: list[UUID],
    ) -> Assignment | LeaseRefused:
        """Lease ``agent`` the first of the tasks it looked at that is still as read and
        that no other claimer holds, in one try (``AttemptRepository.open_first``);
        TASK_TAKEN when every one was taken meanwhile, AGENT_CHANGED when the agent's
        record changed since its look. Those this process leased since are passed over,
        and those another of its claims is leasing now are tried last (the one this
        claim expects to take is marked in ``taking`` while its transaction lasts)."""
        untaken = [task for task in looked_at if task.version > self._taken.get(task.id, 0)]
        ordered = sorted(untaken, key=lambda task: task.id in self._taking)  # stable
        if not ordered:
            return LeaseRefused.TASK_TAKEN
        # One try leases tasks of sessions or tasks of none, not both.
        in_sessions = ordered[0].session_id is not None
        tried = [task for task in ordered if (task.session_id is not None) == in_sessions]
        self._taking.add(tried[0].id)
        taking.append(tried[0].id)
        return await self._leased(uow, agent, tried, now=now)

    async def _leased(
        self, uow: UnitOfWork, agent: Agent, tasks: Sequence[Task], *, now: datetime
    ) -> Assignment | LeaseRefused:
        """Lease ``agent`` the first of ``tasks`` still free (the task saved, the agent
        booked, the attempt opened and the events logged: ``AttemptRepository.open_first``)
        and commit; the assignment, or why nothing was leased (nothing is committed
        then)."""
        booked = agent_with_lease(agent, now=now)
        leases: list[NewLease] = []
        workspaces: dict[UUID, Path] = {}
        for task in tasks:
            running, attempt = lease_task(
                task, agent, now=now, lease_seconds=self._policy.lease_seconds
            )
            leases.append(
                NewLease(
                    task=task,
                    running=running,
                    agent=agent,
                    booked=booked,
                    attempt=attempt,
                    events=[
                        task_events.task_transition(task, running),
                        task_events.task_leased(running, attempt),
                    ],
                )
            )
            # Before the lease: where the lease is one statement it has committed by
            # itself, and nothing that could fail may come after it (a read once per
            # session anyway).
            workspaces[task.id] = await self._workspace(uow, task)
        opened = await uow.attempts.open_first(leases)
        if isinstance(opened, LeaseRefused):
            return opened
        await uow.commit()
        lease, done = opened
        running, attempt = lease.running, lease.attempt
        self._taken[running.id] = lease.task.version
        if len(self._taken) > _TAKEN_KEPT:
            self._taken.popitem(last=False)
        log.info(
            "task_leased",
            task_id=str(running.id),
            agent_id=str(agent.id),
            attempt=attempt.attempt,
        )
        return Assignment(running, attempt, done.finished_dependencies, workspaces[running.id])

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
    files a RUNNING task of their session edits. (A session with files still to be
    written offers no task at all: ``claimable``.)"""
    held: dict[UUID, dict[str, Any]] = {}
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
    may still do them (``domain.tasks.loop_reroute``)."""
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
