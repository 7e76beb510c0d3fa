"""Tasks and their dependency edges (``storage/task_repository.py`` in memory).

A stored task keeps no dependencies of its own: its edges are a row of their own (by
task, in id order), read back with it, as the SQL one reads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from ...domain.agents.agent import Agent
from ...domain.effects import EffectKind, EffectState
from ...domain.sessions.options import SessionOptions
from ...domain.sessions.session import Session
from ...domain.sessions.states import RUNNING_STATES
from ...domain.tasks.task import Task, TaskStatus
from ...services.ports import DuplicateKeyError
from .agents import AGENTS, copied_agent
from .effects import EFFECTS
from .sessions import SESSIONS, MemorySessionRepository, SessionRow
from .store import IntegrityViolation, Transaction

TASKS = "tasks"
EDGES = "task_dependencies"

_COLUMNS = tuple(f.name for f in dataclasses.fields(Task) if f.name != "depends_on")


def _oldest_first(task: Task) -> tuple[datetime, UUID]:
    return task.created_at, task.id


class MemoryTaskRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def _read(self, task: Task) -> Task:
        edges: tuple[UUID, ...] = self._tx.get(EDGES, task.id) or ()
        return task.evolve(depends_on=edges)

    def _load(self, where: Callable[[Task], bool]) -> list[Task]:
        found: list[Task] = self._tx.select(TASKS, where)
        return [self._read(task) for task in sorted(found, key=_oldest_first)]

    async def lock_family(self, key: UUID) -> None:
        """Held already: writers run one at a time (``store``)."""

    async def root_of(self, task_id: UUID) -> UUID:
        root = task_id
        while True:
            task: Task | None = self._tx.get(TASKS, root)
            if task is None or task.parent_id is None:
                return root
            root = task.parent_id

    async def lock_session_family_for(
        self, task_id: UUID, agent_id: UUID
    ) -> tuple[Agent | None, UUID | None]:
        agent: Agent | None = self._tx.get(AGENTS, agent_id)
        if agent is None:
            return None, None
        task: Task | None = self._tx.get(TASKS, task_id)
        return copied_agent(agent), task.session_id if task else None

    async def add(self, task: Task) -> None:
        # The SQL one lets the database refuse these (untranslated).
        if self._tx.get(TASKS, task.id) is not None:
            raise IntegrityViolation(f"task {task.id} exists")
        if task.session_id is not None and self._tx.get(SESSIONS, task.session_id) is None:
            raise IntegrityViolation(f"task of unknown session {task.session_id}")
        if task.parent_id is not None and self._tx.get(TASKS, task.parent_id) is None:
            raise IntegrityViolation(f"task under unknown task {task.parent_id}")
        self._tx.put(
            TASKS,
            task.id,
            task.evolve(
                depends_on=(),
                required_capabilities=tuple(task.required_capabilities),
                files=tuple(task.files),
            ),
        )
        for dependency in task.depends_on:
            await self.add_dependency(task.id, dependency)

    async def add_all(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            await self.add(task.evolve(depends_on=()))
        for task in tasks:
            for dependency in task.depends_on:
                await self.add_dependency(task.id, dependency)

    async def add_dependency(self, task_id: UUID, depends_on: UUID) -> None:
        # As the SQL one: any integrity error of the edge (it exists, or either end does
        # not) is a DuplicateKeyError.
        edges: tuple[UUID, ...] = self._tx.get(EDGES, task_id) or ()
        if depends_on in edges:
            raise DuplicateKeyError(f"{task_id} depends on {depends_on} already")
        for end in (task_id, depends_on):
            if self._tx.get(TASKS, end) is None:
                raise DuplicateKeyError(f"edge to unknown task {end}")
        self._tx.put(EDGES, task_id, tuple(sorted((*edges, depends_on))))

    async def add_dependencies(self, task_id: UUID, depends_on: Sequence[UUID]) -> None:
        for end in depends_on:
            await self.add_dependency(task_id, end)

    async def get(self, task_id: UUID) -> Task | None:
        task: Task | None = self._tx.get(TASKS, task_id)
        return self._read(task) if task else None

    async def get_many(self, task_ids: Sequence[UUID]) -> list[Task]:
        found = [self._tx.get(TASKS, task_id) for task_id in task_ids]
        return [self._read(task) for task in found if task is not None]

    async def search(
        self,
        *,
        session_id: UUID | None,
        parent_id: UUID | None,
        statuses: Sequence[TaskStatus],
        offset: int,
        limit: int | None,
    ) -> tuple[list[Task], int]:
        wanted = set(statuses)
        found = self._load(
            lambda task: (
                (session_id is None or task.session_id == session_id)
                and (parent_id is None or task.parent_id == parent_id)
                and (not wanted or task.status in wanted)
            )
        )
        end = None if limit is None else offset + limit
        return found[offset:end], len(found)

    async def of_session(self, session_id: UUID, statuses: Sequence[TaskStatus] = ()) -> list[Task]:
        wanted = set(statuses)
        return self._load(
            lambda task: task.session_id == session_id and (not wanted or task.status in wanted)
        )

    async def with_session(self, session_id: UUID) -> tuple[Session | None, list[Task]]:
        found = await self.of_session(session_id)
        return await MemorySessionRepository(self._tx).get(session_id), found

    async def sessions_with_tasks_in(
        self, statuses: Sequence[TaskStatus], *, among: Sequence[UUID] | None = None
    ) -> list[UUID]:
        wanted = set(statuses)
        found = {
            task.session_id
            for task in self._tx.rows(TASKS)
            if task.session_id is not None
            and task.status in wanted
            and (among is None or task.session_id in among)
        }
        return list(found)

    async def family(self, task: Task) -> list[Task]:
        if task.session_id is not None:
            return await self.of_session(task.session_id)
        return await self.subtree(await self.root_of(task.id))

    async def subtree(self, root_id: UUID) -> list[Task]:
        children: dict[UUID, list[UUID]] = {}
        for task in self._tx.rows(TASKS):
            if task.parent_id is not None:
                children.setdefault(task.parent_id, []).append(task.id)
        if self._tx.get(TASKS, root_id) is None:
            return []
        tree, frontier = {root_id}, [root_id]
        while frontier:
            below = children.get(frontier.pop(), [])
            frontier.extend(child for child in below if child not in tree)
            tree.update(below)
        return self._load(lambda task: task.id in tree)

    async def save_at_commit(self, before: Task, after: Task, *, stale: Exception) -> None:
        # In process a write costs no round trip: it runs at once.
        if not await self.save(before, after):
            raise stale

    async def save(self, before: Task, after: Task, *, skip_locked: bool = False) -> bool:
        # One writer at a time: no row is ever held by another.
        task: Task | None = self._tx.get(TASKS, before.id)
        if task is None or (task.version, task.status) != (before.version, before.status):
            return False
        changes = {
            column: getattr(after, column)
            for column in _COLUMNS
            if getattr(before, column) != getattr(after, column)
        }
        if changes:
            saved = task.evolve(**changes)
            if saved.id != before.id:
                self._tx.delete(TASKS, before.id)
            self._tx.put(TASKS, saved.id, saved)
        return True

    async def claimable_for(self, agent_id: UUID, *, limit: int) -> tuple[Agent | None, list[Task]]:
        stored: Agent | None = self._tx.get(AGENTS, agent_id)
        if stored is None:
            return None, []
        agent = copied_agent(stored)
        waiting = await self.claimable(
            agent.capabilities, limit=limit, lock=False, agent_name=agent.name
        )
        return agent, waiting

    async def claimable(
        self,
        capabilities: Sequence[str],
        *,
        limit: int,
        lock: bool = True,
        agent_name: str | None = None,
    ) -> list[Task]:
        """As the SQL one; ``lock`` has nothing to do here (one writer at a time)."""
        held = set(capabilities)
        parents = {task.parent_id for task in self._tx.rows(TASKS) if task.parent_id is not None}
        urgency: dict[UUID | None, int] = {None: -1}
        unwritten = {
            effect.session_id
            for effect in self._tx.rows(EFFECTS)
            if effect.state is EffectState.PENDING and effect.kind is EffectKind.WORKSPACE_WRITE
        }

        def open_to(session_id: UUID | None) -> bool:
            if session_id is None:
                return True
            if session_id not in urgency:
                row: SessionRow | None = self._tx.get(SESSIONS, session_id)
                if row is None or row.session.status not in RUNNING_STATES:
                    return False
                if agent_name is not None and not _allows(row.session.options, agent_name):
                    return False
                urgency[session_id] = row.session.priority.rank
            return True

        ready = [
            task
            for task in self._tx.rows(TASKS)
            if task.status is TaskStatus.READY
            and set(task.required_capabilities) <= held
            and task.id not in parents
            and open_to(task.session_id)
            and (task.session_id is None or task.session_id not in unwritten)
        ]
        ready.sort(key=lambda task: (-urgency[task.session_id], task.created_at, task.id))
        return [self._read(task) for task in ready[:limit]]


def _allows(options: SessionOptions, agent_name: str) -> bool:
    """A session that names no agents takes any; one that names some, only those."""
    return not options.agents or agent_name in options.agents
