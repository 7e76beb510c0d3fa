"""Tasks and their dependency edges, stored with guarded updates."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.agents.agent import Agent, agent_from_fields
from ..domain.effects import EffectKind, EffectState
from ..domain.sessions.session import Session
from ..domain.sessions.states import SessionState
from ..domain.tasks.task import Task, TaskStatus, task_fields, task_from_fields
from ..services.ports import DuplicateKeyError
from .commit_writes import CommitWrites
from .direct_execution import Row, fetch_all, fetch_first, fetch_value, run, run_many
from .json_sets import allows, contained_in, subset_of
from .listed import one_of
from .rows import changed_columns, prefixed, session_from_row, unprefixed
from .session_repository import SqlSessionRepository
from .tables import agents, effects, sessions, task_dependencies, tasks
from .written_constants import constant, constants

# A task's claim order is its session's, read as it is written (``tables.tasks``).
_INSERT = sa.insert(tasks).values(
    claim_order=sa.func.coalesce(
        sa.select(-sessions.c.priority_rank)
        .where(sessions.c.id == sa.bindparam("claim_session", type_=sa.Uuid))
        .scalar_subquery(),
        1,
    )
)
_INSERT_EDGE = sa.insert(task_dependencies)
_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")
_SESSION_OF = sa.select(tasks.c.session_id).where(tasks.c.id == sa.bindparam("task_id"))
# ``lock_family``'s key of a task's session, in SQL: the uuid's two 64-bit halves XORed.
_FAMILY_KEY = (
    "('x' || substr(replace(session_id::text, '-', ''), 1, 16))::bit(64)::bigint "
    "# ('x' || substr(replace(session_id::text, '-', ''), 17, 16))::bit(64)::bigint"
)
# A result's family lock (``lock_family``'s key folded in SQL), with the reporting agent's
# record: the task's row is looked at (and the lock taken) only when the agent is
# registered. The lock function is strict: no session, no lock.
_HELD = (
    sa.select(
        tasks.c.session_id.label("of_task_session_id"),
        sa.func.pg_advisory_xact_lock(sa.literal_column(_FAMILY_KEY)).label("of_task_locked"),
    )
    .where(tasks.c.id == sa.bindparam("task_id"))
    .lateral("held")
)
_AGENT_LOCKING_SESSION_OF = (
    sa.select(agents, _HELD.c.of_task_session_id, _HELD.c.of_task_locked)
    .select_from(agents.outerjoin(_HELD, sa.true()))
    .where(agents.c.id == sa.bindparam("agent_id"))
)
_AGENT = sa.select(agents).where(agents.c.id == sa.bindparam("agent_id"))
# Built once: the SET clause is the execution's own columns (besides the w_ guards), and
# SQLAlchemy compiles each set of columns once. Built per call, the statement and its
# cache key cost more CPU than the database spends running it.
_GUARDED_UPDATE = sa.update(tasks).where(
    tasks.c.id == sa.bindparam("w_id"),
    tasks.c.version == sa.bindparam("w_version"),
    tasks.c.status == sa.bindparam("w_status"),
)
# The same, unless another transaction holds the row: the row found by a subquery that
# skips locked rows (an UPDATE waits for them).
_GUARDED_UPDATE_SKIP_LOCKED = sa.update(tasks).where(
    tasks.c.id
    == sa.select(tasks.c.id)
    .where(
        tasks.c.id == sa.bindparam("w_id"),
        tasks.c.version == sa.bindparam("w_version"),
        tasks.c.status == sa.bindparam("w_status"),
    )
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)


@functools.lru_cache(maxsize=512)
def _claimable_query(
    capabilities: tuple[str, ...], limit: int, lock: bool, agent_name: str | None, dialect: str
) -> sa.Select[Any]:
    """``claimable``'s statement, built once per agent's shape of ask. Building it and its
    cache key on every ask cost more than running it (the most frequent statement
    there is: every waiting agent asks on every wake-up); a statement object is immutable
    and keeps its cache key."""
    within = subset_of(tasks.c.required_capabilities, list(capabilities), dialect)
    allowed = (
        sa.true()
        if agent_name is None
        else allows(sessions.c.options, "agents", agent_name, dialect)
    )
    query = _claimable_of(within, allowed, dialect).limit(limit)
    if lock and dialect == "postgresql":
        query = query.with_for_update(skip_locked=True, of=tasks)
    return query


AGENT_PREFIX = "of_agent_"
"""The asking agent's columns beside the tasks it can do."""


@functools.cache
def _claimable_for_query(limit: int) -> sa.Select[Any]:
    """``claimable_for``'s statement on PostgreSQL: the agent's row, joined to the tasks
    it can do, looked for with its own capabilities and name (one row with no task when
    there is none; no row when the agent is not registered)."""
    within = contained_in(tasks.c.required_capabilities, agents.c.capabilities)
    listed = sa.type_coerce(sessions.c.options, JSONB)["agents"]
    allowed = sa.or_(
        sa.func.coalesce(sa.func.jsonb_array_length(listed), 0) == 0,
        listed.contains(sa.func.jsonb_build_array(agents.c.name)),
    )
    look = (
        _claimable_of(within, allowed, "postgresql")
        .limit(sa.literal_column(str(int(limit))))
        .lateral("look")
    )
    return (
        sa.select(*prefixed(agents.c, AGENT_PREFIX), look)
        .select_from(agents.outerjoin(look, sa.true()))
        .where(agents.c.id == sa.bindparam("agent_id"))
        .order_by(look.c.claim_order, look.c.created_at, look.c.id)
    )


def _claimable_of(within: Any, allowed: Any, dialect: str) -> sa.Select[Any]:
    """READY tasks that pass ``within`` (the agent's capabilities) in sessions where
    ``allowed`` (the agent's name), most urgent first (``claimable``)."""
    child = tasks.alias("child")
    query = (
        sa.select(tasks, _depends_on(dialect))
        .where(
            tasks.c.status == constant(TaskStatus.READY.value),
            within,
            ~sa.exists(sa.select(child.c.id).where(child.c.parent_id == tasks.c.id)),
            sa.or_(
                tasks.c.session_id.is_(None),
                # Asked of each task as the index gives them, by its session's key: a
                # value, not EXISTS, which PostgreSQL may answer from a hash of every
                # running session built first (a look then reads the whole fleet).
                sa.select(
                    sa.and_(
                        # Written into the text: an expanding IN is rendered again on
                        # every run, and cannot be run directly.
                        sessions.c.status.in_(
                            constants([SessionState.RUNNING.value, SessionState.DEGRADED.value])
                        ),
                        # A session may name the agents its tasks are for (a fork's).
                        allowed,
                    )
                )
                .where(sessions.c.id == tasks.c.session_id)
                .correlate_except(sessions)  # the task, and the agent's row when joined
                .scalar_subquery(),
            ),
            # Files a finished task of the session delivered are still to be written:
            # its next tasks would start without them.
            ~sa.exists(
                sa.select(effects.c.key).where(
                    effects.c.state == constant(EffectState.PENDING.value),
                    effects.c.session_id == tasks.c.session_id,
                    effects.c.kind == constant(EffectKind.WORKSPACE_WRITE.value),
                )
            ),
        )
        .order_by(tasks.c.claim_order, tasks.c.created_at, tasks.c.id)
    )
    return query


SESSION_PREFIX = "of_session_"
"""A session's columns beside its tasks', under names no task column has."""


class SqlTaskRepository:
    def __init__(self, connection: AsyncConnection, writes: CommitWrites | None = None) -> None:
        self._db = connection
        self._writes = writes

    async def lock_family(self, key: UUID) -> None:
        """Serialise the writers of one task family (a session's tasks, or one tree) until
        the transaction ends: their checks (cycles, plans, dependencies) read the whole
        family. SQLite writers hold the database lock already."""
        if self._db.dialect.name != "postgresql":
            return
        # The key's two halves XORed, as _FAMILY_KEY folds it in SQL.
        folded = (key.int >> 64) ^ (key.int & 0xFFFF_FFFF_FFFF_FFFF)
        signed = folded - (1 << 64) if folded >= 1 << 63 else folded
        await run(self._db, _LOCK, {"key": signed})

    async def root_of(self, task_id: UUID) -> UUID:
        """The top of ``task_id``'s tree (parents never change, so no lock is needed)."""
        root = task_id
        while True:
            parent = await self._db.scalar(sa.select(tasks.c.parent_id).where(tasks.c.id == root))
            if parent is None:
                return root
            root = parent

    async def lock_session_family_for(
        self, task_id: UUID, agent_id: UUID
    ) -> tuple[Agent | None, UUID | None]:
        """One statement on PostgreSQL: the agent's record, the task's session and its
        family's lock; neither session nor lock when the agent is not registered."""
        if self._db.dialect.name == "postgresql":
            row = await fetch_first(
                self._db, _AGENT_LOCKING_SESSION_OF, {"agent_id": agent_id, "task_id": task_id}
            )
            if row is None:
                return None, None
            return agent_from_fields(row), row["of_task_session_id"]
        found = await fetch_first(self._db, _AGENT, {"agent_id": agent_id})
        if found is None:
            return None, None
        # SQLite writers hold the database's lock already: the session is all there is.
        session_id: UUID | None = await fetch_value(self._db, _SESSION_OF, {"task_id": task_id})
        return agent_from_fields(found), session_id

    async def add(self, task: Task) -> None:
        await self.add_all([task])

    async def add_all(self, new: Sequence[Task]) -> None:
        if not new:
            return
        await run_many(
            self._db,
            _INSERT,
            [{**task_values(task), "claim_session": task.session_id} for task in new],
        )
        edges = [{"task_id": t.id, "depends_on": d} for t in new for d in t.depends_on]
        if not edges:
            return
        try:
            await run_many(self._db, _INSERT_EDGE, edges)
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    async def add_dependency(self, task_id: UUID, depends_on: UUID) -> None:
        try:
            await run(self._db, _INSERT_EDGE, {"task_id": task_id, "depends_on": depends_on})
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    async def add_dependencies(self, task_id: UUID, depends_on: Sequence[UUID]) -> None:
        edges = [{"task_id": task_id, "depends_on": end} for end in depends_on]
        try:
            await run_many(self._db, _INSERT_EDGE, edges)
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    async def get(self, task_id: UUID) -> Task | None:
        query = _by_id(self._db.dialect.name)
        row = await fetch_first(self._db, query, {"task_id": task_id})
        return _task(row) if row else None

    async def get_many(self, task_ids: Sequence[UUID]) -> list[Task]:
        if not task_ids:
            return []
        rows = await fetch_all(self._db, _many(self._db.dialect.name), {"ids": list(task_ids)})
        found = {task.id: task for task in (_task(row) for row in rows)}
        return [found[task_id] for task_id in task_ids if task_id in found]

    async def search(
        self,
        *,
        session_id: UUID | None,
        parent_id: UUID | None,
        statuses: Sequence[TaskStatus],
        offset: int,
        limit: int | None,
    ) -> tuple[list[Task], int]:
        conditions: list[Any] = []
        if session_id is not None:
            conditions.append(tasks.c.session_id == session_id)
        if parent_id is not None:
            conditions.append(tasks.c.parent_id == parent_id)
        if statuses:
            conditions.append(tasks.c.status.in_(constants(s.value for s in statuses)))
        page = await self._load(*conditions, offset=offset, limit=limit)
        if (limit is None or len(page) < limit) and (page or not offset):
            return page, offset + len(page)  # the page reaches the end: no count needed
        total = await self._db.scalar(
            sa.select(sa.func.count()).select_from(tasks).where(*conditions)
        )
        return page, int(total or 0)

    async def of_session(self, session_id: UUID, statuses: Sequence[TaskStatus] = ()) -> list[Task]:
        if not statuses:
            query = _of_session(self._db.dialect.name)
            rows = await fetch_all(self._db, query, {"session_id": session_id})
            return [_task(row) for row in rows]
        return await self._load(
            tasks.c.session_id == session_id,
            tasks.c.status.in_(constants(s.value for s in statuses)),
        )

    async def with_session(self, session_id: UUID) -> tuple[Session | None, list[Task]]:
        if self._db.dialect.name != "postgresql":
            found = await self.of_session(session_id)
            return await SqlSessionRepository(self._db).get(session_id), found
        return session_and_tasks(
            await fetch_all(self._db, _with_session(), {"session_id": session_id})
        )

    async def sessions_with_tasks_in(
        self, statuses: Sequence[TaskStatus], *, among: Sequence[UUID] | None = None
    ) -> list[UUID]:
        if among is not None and not among:
            return []
        query = _sessions_with_tasks_in(
            tuple(sorted(s.value for s in statuses)), among is None, self._db.dialect.name
        )
        params = {} if among is None else {"among": list(among)}
        return [row["session_id"] for row in await fetch_all(self._db, query, params)]

    async def family(self, task: Task) -> list[Task]:
        """The tasks a dependency of ``task`` may point at: its session's tasks, or, for a
        task outside any session, every task of its tree."""
        if task.session_id is not None:
            return await self.of_session(task.session_id)
        return await self.subtree(await self.root_of(task.id))

    async def subtree(self, root_id: UUID) -> list[Task]:
        """``root_id`` and every task below it."""
        tree = sa.select(tasks.c.id).where(tasks.c.id == root_id).cte("tree", recursive=True)
        tree = tree.union_all(sa.select(tasks.c.id).where(tasks.c.parent_id == tree.c.id))
        return await self._load(tasks.c.id.in_(sa.select(tree.c.id)))

    async def save(self, before: Task, after: Task, *, skip_locked: bool = False) -> bool:
        """Write ``after`` if the row is still ``before`` (same version and status);
        with ``skip_locked``, not if another transaction holds the row (PostgreSQL)."""
        postgresql = self._db.dialect.name == "postgresql"
        update = _GUARDED_UPDATE_SKIP_LOCKED if skip_locked and postgresql else _GUARDED_UPDATE
        return await run(self._db, update, _guarded(before, after)) == 1

    async def save_at_commit(self, before: Task, after: Task, *, stale: Exception) -> None:
        """``save`` at the commit (``CommitWrites``): the commit raises ``stale`` if the
        row is not ``before`` by then."""
        assert self._writes is not None, "a unit of work's repository keeps writes"
        await self._writes.add(
            ("tasks", before.id), _GUARDED_UPDATE, _guarded(before, after), stale=stale
        )

    async def claimable(
        self,
        capabilities: Sequence[str],
        *,
        limit: int,
        lock: bool = True,
        agent_name: str | None = None,
    ) -> list[Task]:
        """READY tasks an agent holding ``capabilities`` can do, most urgent first: tasks
        of RUNNING (or DEGRADED) sessions by the session's priority, and tasks outside any
        session, each group oldest first. A task split into subtasks is not handed out
        (its subtasks are the work), nor one of a session with files still to be
        written. On PostgreSQL the rows come locked, skipping rows another claimer holds,
        so two claimers never race for one task."""
        query = _claimable_query(
            tuple(capabilities), limit, lock, agent_name, self._db.dialect.name
        )
        return [_task(row) for row in await fetch_all(self._db, query)]

    async def claimable_for(self, agent_id: UUID, *, limit: int) -> tuple[Agent | None, list[Task]]:
        """One statement on PostgreSQL: the agent's record and ``claimable`` for it (its
        capabilities and name, unlocked); (None, []) when it is not registered."""
        if self._db.dialect.name != "postgresql":
            found = await fetch_first(self._db, _AGENT, {"agent_id": agent_id})
            if found is None:
                return None, []
            agent = agent_from_fields(found)
            waiting = await self.claimable(
                agent.capabilities, limit=limit, lock=False, agent_name=agent.name
            )
            return agent, waiting
        rows = await fetch_all(self._db, _claimable_for_query(limit), {"agent_id": agent_id})
        if not rows:
            return None, []
        fields = unprefixed(rows[0], AGENT_PREFIX, "id")
        assert fields is not None  # the agent's own columns: never NULL
        return agent_from_fields(fields), [_task(row) for row in rows if row["id"] is not None]

    async def _load(
        self, *conditions: Any, offset: int = 0, limit: int | None = None
    ) -> list[Task]:
        query = (
            sa.select(tasks, _depends_on(self._db.dialect.name))
            .where(*conditions)
            .order_by(tasks.c.created_at, tasks.c.id)
            .offset(offset)
            .limit(limit)
        )
        return [_task(row) for row in (await self._db.execute(query)).mappings()]


def task_values(task: Task) -> dict[str, Any]:
    # The columns are the record's fields but its dependencies (rows of task_dependencies).
    values = task_fields(task)
    del values["depends_on"]
    return values


# The most frequent reads, built once: building a statement and its cache key costs more
# than a small read's round trip; a built statement keeps its cache key.
@functools.cache
def _by_id(dialect: str) -> sa.Select[Any]:
    return sa.select(tasks, _depends_on(dialect)).where(tasks.c.id == sa.bindparam("task_id"))


@functools.cache
def _many(dialect: str) -> sa.Select[Any]:
    ids = one_of(tasks.c.id, "ids", sa.Uuid, dialect)
    return sa.select(tasks, _depends_on(dialect)).where(ids)


@functools.cache
def _of_session(dialect: str) -> sa.Select[Any]:
    return (
        sa.select(tasks, _depends_on(dialect))
        .where(tasks.c.session_id == sa.bindparam("session_id"))
        .order_by(tasks.c.created_at, tasks.c.id)
    )


def session_with_tasks(*beside: Any, joins: Sequence[tuple[Any, Any]] = ()) -> sa.Select[Any]:
    """PostgreSQL: a session and its tasks in one statement (the session's columns, under
    ``SESSION_PREFIX``, beside each of its tasks', or beside NULLs when it has none),
    oldest task first; ``beside``: more columns, of ``joins`` (each a table and its ON
    clause, outer-joined after the tasks)."""
    joined = sessions.outerjoin(tasks, tasks.c.session_id == sessions.c.id)
    for table, on in joins:
        joined = joined.outerjoin(table, on)
    return (
        sa.select(*prefixed(sessions.c, SESSION_PREFIX), tasks, _depends_on("postgresql"), *beside)
        .select_from(joined)
        .where(sessions.c.id == sa.bindparam("session_id"))
        .order_by(tasks.c.created_at, tasks.c.id)
    )


def session_and_tasks(rows: Sequence[Row]) -> tuple[Session | None, list[Task]]:
    """``session_with_tasks``' rows as the session and its tasks."""
    if not rows:
        return None, []
    session = unprefixed(rows[0], SESSION_PREFIX, "id")
    assert session is not None  # the row is the session's, joined with its tasks
    return session_from_row(session), [_task(row) for row in rows if row["id"] is not None]


@functools.cache
def _with_session() -> sa.Select[Any]:
    return session_with_tasks()


def _guarded(before: Task, after: Task) -> dict[str, Any]:
    """``_GUARDED_UPDATE``'s parameters: the columns that change, and the row as it was."""
    old, new = task_values(before), task_values(after)
    return {
        **changed_columns(old, new, version=before.version),
        "w_id": before.id,
        "w_version": before.version,
        "w_status": old["status"],
    }


@functools.lru_cache(maxsize=64)
def _sessions_with_tasks_in(statuses: tuple[str, ...], anywhere: bool, dialect: str) -> Any:
    """``sessions_with_tasks_in``'s statement, built once per set of states: the states
    written into its text (each a ``TaskStatus``, so nothing to escape), the sessions
    (``among``) one array on PostgreSQL."""
    within = tasks.c.status.in_(constants(TaskStatus(status).value for status in statuses))
    among = (
        tasks.c.session_id.is_not(None)
        if anywhere
        else one_of(tasks.c.session_id, "among", sa.Uuid, dialect)
    )
    return sa.select(tasks.c.session_id).where(among, within).distinct()


@functools.cache
def _depends_on(dialect: str) -> sa.Label[Any]:
    """A task's dependencies as a column of its row: read with it, not by a second
    statement (a session's tasks are read several times per finished task)."""
    edge = sa.select(
        sa.func.array_agg(task_dependencies.c.depends_on)
        if dialect == "postgresql"
        else sa.func.group_concat(task_dependencies.c.depends_on)
    ).where(task_dependencies.c.task_id == tasks.c.id)
    return edge.scalar_subquery().label("depends_on")


def _edges_of(value: Any) -> tuple[UUID, ...]:
    """``_depends_on``'s value: a list of ids (PostgreSQL), ids in hex joined by commas
    (SQLite), or nothing; in id order, as they were always given."""
    if not value:
        return ()
    ids = [UUID(text) for text in value.split(",")] if isinstance(value, str) else value
    return tuple(sorted(ids))


def _task(row: Row) -> Task:
    return task_from_fields({**row, "depends_on": _edges_of(row["depends_on"])})


# For the repositories that read a task beside their own rows.
task_from_row = _task
depends_on_column = _depends_on
