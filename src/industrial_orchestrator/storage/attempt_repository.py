"""Task attempts (leases) and their artifacts. An attempt row is written open, then closed
once, guarded by ``outcome IS NULL``: two closers (a result and the reaper) cannot both
win."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.agents.agent import agent_fields
from ..domain.agents.records import FinishedAttempt, duration_ms
from ..domain.sessions.session import Session
from ..domain.tasks.artifacts import Artifact
from ..domain.tasks.attempts import AttemptOutcome, TaskAttempt
from ..domain.tasks.loop_guard import GUARD_ERROR_PREFIX
from ..domain.tasks.task import FINISHED_STATUSES, Task, TaskType
from ..services.ports import (
    LeaseRefused,
    NewLease,
    OpenedLease,
    StoredArtifact,
    check_one_try,
)
from .agent_repository import SqlAgentRepository
from .commit_writes import CommitWrites
from .database import storable_json_text
from .direct_execution import fetch_all, fetch_first, run
from .event_repository import SqlEventRepository
from .lease_statement import AGENT, ATTEMPT, TASK, WAS, lease_statement
from .rows import changed_columns, prefixed, unprefixed, utc
from .tables import task_artifacts, task_attempts, tasks
from .task_repository import (
    SqlTaskRepository,
    depends_on_column,
    session_and_tasks,
    session_with_tasks,
    task_from_row,
    task_values,
)
from .written_constants import constants

# The outcomes a record counts (RELEASED does not: see ``domain.agents.records``).
_RECORDED = (AttemptOutcome.COMPLETED, AttemptOutcome.FAILED, AttemptOutcome.EXPIRED)
# Beyond this many agents the filter is applied here rather than as an IN list.
_MAX_LISTED_AGENTS = 1000
# Built once (read with every result): a built statement keeps its cache key.
_BY_KEY = sa.select(task_attempts).where(
    task_attempts.c.task_id == sa.bindparam("task_id"),
    task_attempts.c.attempt == sa.bindparam("attempt"),
)
_INSERT = sa.insert(task_attempts)
# The current attempt's columns beside the task's, under names no task column has.
_CURRENT_PREFIX = "current_attempt_"


@functools.cache
def _with_task() -> Any:
    """PostgreSQL: a task and its current attempt in one statement (the attempt by its
    primary key, the task's own ``attempt``)."""
    current = task_attempts.alias("current")
    joined = tasks.outerjoin(
        current, sa.and_(current.c.task_id == tasks.c.id, current.c.attempt == tasks.c.attempt)
    )
    return (
        sa.select(
            tasks,
            depends_on_column("postgresql"),
            *prefixed(current.c, _CURRENT_PREFIX),
        )
        .select_from(joined)
        .where(tasks.c.id == sa.bindparam("task_id"))
    )


@functools.cache
def _in_session() -> Any:
    """PostgreSQL: a session, its tasks, and one task's current attempt beside that
    task's columns (NULLs beside the others') in one statement."""
    current = task_attempts.alias("current")
    held = sa.and_(
        current.c.task_id == tasks.c.id,
        current.c.attempt == tasks.c.attempt,
        tasks.c.id == sa.bindparam("task_id"),
    )
    return session_with_tasks(*prefixed(current.c, _CURRENT_PREFIX), joins=[(current, held)])


_OPEN_OF_TASKS = (
    sa.select(task_attempts)
    .where(
        task_attempts.c.task_id.in_(sa.bindparam("task_ids", expanding=True)),
        task_attempts.c.outcome.is_(None),
    )
    .order_by(task_attempts.c.task_id, task_attempts.c.attempt)
)
_CLOSED = (
    "outcome",
    "finished_at",
    "error",
    "output",
    "execution_time_ms",
    "tokens_used",
    "cost_usd",
)
# The SET clause is the execution's own columns (besides the w_ guards).
_CLOSE = sa.update(task_attempts).where(
    task_attempts.c.task_id == sa.bindparam("w_task_id"),
    task_attempts.c.attempt == sa.bindparam("w_attempt"),
    task_attempts.c.outcome.is_(None),
)


class SqlAttemptRepository:
    def __init__(
        self,
        connection: AsyncConnection,
        events: SqlEventRepository,
        writes: CommitWrites | None = None,
    ) -> None:
        self._db = connection
        self._events = events
        """The transaction's event log, which a lease's events join."""
        self._writes = writes

    async def add(self, attempt: TaskAttempt) -> None:
        await run(self._db, _INSERT, _values(attempt))

    async def open(self, lease: NewLease) -> OpenedLease | LeaseRefused:
        opened = await self.open_first([lease])
        return opened if isinstance(opened, LeaseRefused) else opened[1]

    async def open_first(
        self, leases: Sequence[NewLease]
    ) -> tuple[NewLease, OpenedLease] | LeaseRefused:
        # The statement tells a lease by its events and numbers them in the task's
        # session: steps here would not be all or nothing where the caller holds no
        # transaction.
        check_one_try(leases)
        if self._db.dialect.name != "postgresql":
            for lease in leases:
                opened = await self._open_in_steps(lease)
                if opened is not LeaseRefused.TASK_TAKEN:
                    return opened if isinstance(opened, LeaseRefused) else (lease, opened)
            return LeaseRefused.TASK_TAKEN
        first = leases[0]
        numbered = first.task.session_id is not None
        tasks_written = [
            changed_columns(
                task_values(lease.task), task_values(lease.running), version=lease.task.version
            )
            for lease in leases
        ]
        task_keys = sorted({key for changes in tasks_written for key in changes})
        task_rows = [task_values(lease.running) for lease in leases]
        attempt_rows = [_values(lease.attempt) for lease in leases]
        task_arrays = _differing(task_keys, task_rows)
        attempt_arrays = _differing(list(attempt_rows[0]), attempt_rows)
        if len(leases) > 1 and (
            any(_is_json(tasks.c[key].type) for key in task_arrays)
            or any(_is_json(task_attempts.c[key].type) for key in attempt_arrays)
        ):
            return await self.open_first(leases[:1])  # not as arrays: one at a time
        agent_changes = changed_columns(
            agent_fields(first.agent), agent_fields(first.booked), version=first.agent.version
        )
        statement = lease_statement(
            tuple(task_keys),
            task_arrays,
            tuple(agent_changes),
            tuple(attempt_rows[0]),
            attempt_arrays,
            numbered,
        )
        rows = await fetch_all(
            self._db,
            statement,
            {
                **_written(TASK, task_keys, task_arrays, task_rows),
                **{AGENT + key: value for key, value in agent_changes.items()},
                **_written(ATTEMPT, list(attempt_rows[0]), attempt_arrays, attempt_rows),
                WAS + "task_ids": [lease.task.id for lease in leases],
                WAS + "task_versions": [lease.task.version for lease in leases],
                WAS + "task_status": first.task.status.value,
                WAS + "agent_id": first.agent.id,
                WAS + "agent_version": first.agent.version,
                "l_session_ids": [lease.task.session_id for lease in leases],
                "l_counts": [len(lease.events) for lease in leases],
                "l_event_of": [n for n, lease in enumerate(leases, 1) for _ in lease.events],
                "l_event_numbers": [k for lease in leases for k in range(1, len(lease.events) + 1)],
                "l_types": [e.type.value for lease in leases for e in lease.events],
                "l_ats": [e.at for lease in leases for e in lease.events],
                "l_payloads": [
                    storable_json_text(e.payload) for lease in leases for e in lease.events
                ],
                "l_dependency_of": [
                    n for n, lease in enumerate(leases, 1) for _ in lease.running.depends_on
                ],
                "l_dependencies": [d for lease in leases for d in lease.running.depends_on],
                "l_finished": sorted(status.value for status in FINISHED_STATUSES),
            },
        )
        outcome = rows[0]  # a row even without dependencies
        if not outcome["agent"]:
            return LeaseRefused.AGENT_CHANGED
        if not outcome["logged"]:
            return LeaseRefused.TASK_TAKEN
        lease = leases[int(outcome["leased"]) - 1]
        if outcome["logged"] != len(lease.events):  # the session's row is gone: not stored
            raise LookupError(lease.task.session_id)
        self._events.stored_apart(lease.events)
        finished = sorted(
            (task_from_row(row) for row in rows if row["id"] is not None),
            key=lambda task: lease.running.depends_on.index(task.id),
        )
        return lease, OpenedLease(finished)

    async def _open_in_steps(self, lease: NewLease) -> OpenedLease | LeaseRefused:
        tasks = SqlTaskRepository(self._db)
        if not await tasks.save(lease.task, lease.running, skip_locked=True):
            return LeaseRefused.TASK_TAKEN
        if not await SqlAgentRepository(self._db).save(lease.agent, lease.booked):
            return LeaseRefused.AGENT_CHANGED
        await self.add(lease.attempt)
        await self._events.append(lease.events)
        dependencies = await tasks.get_many(lease.running.depends_on)
        return OpenedLease([dep for dep in dependencies if dep.status in FINISHED_STATUSES])

    async def get(self, task_id: UUID, attempt: int) -> TaskAttempt | None:
        row = await fetch_first(self._db, _BY_KEY, {"task_id": task_id, "attempt": attempt})
        return _attempt(row) if row else None

    async def with_task(self, task_id: UUID) -> tuple[Task | None, TaskAttempt | None]:
        if self._db.dialect.name != "postgresql":
            task = await SqlTaskRepository(self._db).get(task_id)
            if task is None or not task.attempt:
                return task, None
            return task, await self.get(task.id, task.attempt)
        row = await fetch_first(self._db, _with_task(), {"task_id": task_id})
        if row is None:
            return None, None
        current = unprefixed(row, _CURRENT_PREFIX, "task_id")
        return task_from_row(row), _attempt(current) if current else None

    async def in_session(
        self, session_id: UUID, task_id: UUID
    ) -> tuple[Session | None, list[Task], TaskAttempt | None]:
        if self._db.dialect.name != "postgresql":
            session, found = await SqlTaskRepository(self._db).with_session(session_id)
            task = next((t for t in found if t.id == task_id), None)
            if task is None or not task.attempt:
                return session, found, None
            return session, found, await self.get(task.id, task.attempt)
        rows = await fetch_all(
            self._db, _in_session(), {"session_id": session_id, "task_id": task_id}
        )
        session, found = session_and_tasks(rows)
        attempts = (unprefixed(row, _CURRENT_PREFIX, "task_id") for row in rows)
        current = next((_attempt(a) for a in attempts if a is not None), None)
        return session, found, current

    async def of_task(self, task_id: UUID) -> list[TaskAttempt]:
        result = await self._db.execute(
            sa.select(task_attempts)
            .where(task_attempts.c.task_id == task_id)
            .order_by(task_attempts.c.attempt)
        )
        return [_attempt(row) for row in result.mappings()]

    async def open_of_agent(self, agent_id: UUID) -> list[TaskAttempt]:
        result = await self._db.execute(
            sa.select(task_attempts)
            .where(task_attempts.c.agent_id == agent_id, task_attempts.c.outcome.is_(None))
            .order_by(task_attempts.c.leased_at, task_attempts.c.task_id)
        )
        return [_attempt(row) for row in result.mappings()]

    async def open_of_tasks(self, task_ids: Sequence[UUID]) -> list[TaskAttempt]:
        if not task_ids:
            return []
        rows = await fetch_all(self._db, _OPEN_OF_TASKS, {"task_ids": list(task_ids)})
        return [_attempt(row) for row in rows]

    async def expired(self, before: datetime, *, limit: int) -> list[TaskAttempt]:
        result = await self._db.execute(
            sa.select(task_attempts)
            .where(task_attempts.c.outcome.is_(None), task_attempts.c.expires_at < before)
            .order_by(task_attempts.c.expires_at)
            .limit(limit)
        )
        return [_attempt(row) for row in result.mappings()]

    async def renew(
        self, agent_id: UUID, expires_at: datetime, *, only: Sequence[UUID] | None = None
    ) -> list[TaskAttempt]:
        """Push the expiry of the open attempts of ``agent_id`` (of the tasks ``only``,
        when given) to ``expires_at``; returns the renewed attempts."""
        conditions = [task_attempts.c.agent_id == agent_id, task_attempts.c.outcome.is_(None)]
        if only is not None:
            conditions.append(task_attempts.c.task_id.in_(list(only)))
        await self._db.execute(
            sa.update(task_attempts).where(*conditions).values(expires_at=expires_at)
        )
        renewed = set(only) if only is not None else None
        return [
            attempt
            for attempt in await self.open_of_agent(agent_id)
            if renewed is None or attempt.task_id in renewed
        ]

    async def set_trouble(self, task_id: UUID, attempt: int, trouble: str | None) -> bool:
        result = await self._db.execute(
            sa.update(task_attempts)
            .where(
                task_attempts.c.task_id == task_id,
                task_attempts.c.attempt == attempt,
                task_attempts.c.outcome.is_(None),
            )
            .values(trouble=trouble)
        )
        return result.rowcount == 1

    async def close(self, closed: TaskAttempt) -> bool:
        """Record how the attempt ended, if it is still open."""
        return await run(self._db, _CLOSE, _closing(closed)) == 1

    async def close_at_commit(self, closed: TaskAttempt, *, stale: Exception) -> None:
        """``close`` at the commit (``CommitWrites``): the commit raises ``stale`` if the
        attempt has ended by then."""
        assert self._writes is not None, "a unit of work's repository keeps writes"
        row = ("task_attempts", (closed.task_id, closed.attempt))
        await self._writes.add(row, _CLOSE, _closing(closed), stale=stale)

    async def recent_results(
        self,
        *,
        agent_ids: Sequence[UUID] | None,
        task_types: Sequence[TaskType] | None,
        since: datetime,
        per_pair: int,
    ) -> list[FinishedAttempt]:
        """The most recent ``per_pair`` attempts finished since ``since`` (completed,
        failed or expired) of each (agent, task type), of ``agent_ids`` and ``task_types``
        (None: all). Medians are left to the caller: the window is small, and computing
        them in Python works the same on SQLite and PostgreSQL."""
        if (agent_ids is not None and not agent_ids) or (task_types is not None and not task_types):
            return []
        recency = (
            sa.func.row_number()
            .over(
                partition_by=(task_attempts.c.agent_id, tasks.c.task_type),
                order_by=(
                    task_attempts.c.finished_at.desc(),
                    task_attempts.c.task_id,
                    task_attempts.c.attempt.desc(),
                ),
            )
            .label("recency")
        )
        conditions = [
            task_attempts.c.outcome.in_(constants(o.value for o in _RECORDED)),
            task_attempts.c.finished_at >= since,
        ]
        wanted = None if agent_ids is None else set(agent_ids)
        if wanted is not None and len(wanted) <= _MAX_LISTED_AGENTS:
            conditions.append(task_attempts.c.agent_id.in_(sorted(wanted)))
        if task_types is not None:
            conditions.append(tasks.c.task_type.in_(sorted({t.value for t in task_types})))
        window = (
            sa.select(
                task_attempts.c.agent_id,
                tasks.c.task_type,
                task_attempts.c.outcome,
                task_attempts.c.execution_time_ms,
                task_attempts.c.leased_at,
                task_attempts.c.finished_at,
                task_attempts.c.cost_usd,
                recency,
            )
            .select_from(task_attempts.join(tasks, tasks.c.id == task_attempts.c.task_id))
            .where(*conditions)
            .subquery()
        )
        result = await self._db.execute(sa.select(window).where(window.c.recency <= per_pair))
        found: list[FinishedAttempt] = []
        known_types = {t.value for t in TaskType}
        for row in result.mappings():
            if row["task_type"] not in known_types:
                continue
            if wanted is not None and row["agent_id"] not in wanted:
                continue
            found.append(
                FinishedAttempt(
                    agent_id=row["agent_id"],
                    task_type=TaskType(row["task_type"]),
                    succeeded=row["outcome"] == AttemptOutcome.COMPLETED.value,
                    duration_ms=duration_ms(
                        row["execution_time_ms"],
                        _required(utc(row["leased_at"])),
                        utc(row["finished_at"]),
                    ),
                    cost_usd=float(row["cost_usd"]),
                )
            )
        return found

    async def add_artifacts(
        self, attempt: TaskAttempt, artifacts: Sequence[Artifact], at: datetime
    ) -> None:
        if not artifacts:
            return
        await self._db.execute(
            sa.insert(task_artifacts),
            [
                {
                    "id": uuid4(),
                    "task_id": attempt.task_id,
                    "attempt": attempt.attempt,
                    "path": artifact.path,
                    "mime_type": artifact.mime_type,
                    "size_bytes": artifact.size_bytes,
                    "sha256": artifact.sha256,
                    "content": artifact.content,
                    "created_at": at,
                }
                for artifact in artifacts
            ],
        )

    async def touched(self, task_ids: Sequence[UUID]) -> dict[UUID, set[str]]:
        if not task_ids:
            return {}
        result = await self._db.execute(
            sa.select(task_artifacts.c.task_id, task_artifacts.c.path)
            .where(task_artifacts.c.task_id.in_(list(task_ids)))
            .distinct()
        )
        paths: dict[UUID, set[str]] = {}
        for task_id, path in result:
            paths.setdefault(task_id, set()).add(path)
        return paths

    async def stopped_by_guard(self, task_ids: Sequence[UUID]) -> dict[UUID, set[UUID]]:
        if not task_ids:
            return {}
        result = await self._db.execute(
            sa.select(task_attempts.c.task_id, task_attempts.c.agent_id)
            .where(
                task_attempts.c.task_id.in_(list(task_ids)),
                task_attempts.c.outcome == AttemptOutcome.FAILED.value,
                task_attempts.c.error.startswith(GUARD_ERROR_PREFIX, autoescape=True),
            )
            .distinct()
        )
        stopped: dict[UUID, set[UUID]] = {}
        for task_id, agent_id in result:
            stopped.setdefault(task_id, set()).add(agent_id)
        return stopped

    async def delivered(self, task_id: UUID, attempt: int) -> list[Artifact]:
        result = await self._db.execute(
            sa.select(task_artifacts)
            .where(task_artifacts.c.task_id == task_id, task_artifacts.c.attempt == attempt)
            .order_by(task_artifacts.c.path)
        )
        return [
            Artifact(
                path=row["path"],
                content=bytes(row["content"]),
                mime_type=row["mime_type"],
                sha256=row["sha256"],
                size_bytes=row["size_bytes"],
            )
            for row in result.mappings()
        ]

    async def artifacts(self, task_id: UUID) -> list[StoredArtifact]:
        """What the task's attempts delivered (without the content), by attempt and path."""
        result = await self._db.execute(
            sa.select(
                task_artifacts.c.attempt,
                task_artifacts.c.path,
                task_artifacts.c.mime_type,
                task_artifacts.c.size_bytes,
                task_artifacts.c.sha256,
                task_artifacts.c.created_at,
            )
            .where(task_artifacts.c.task_id == task_id)
            .order_by(task_artifacts.c.attempt, task_artifacts.c.path)
        )
        return [
            StoredArtifact(
                attempt=int(row["attempt"]),
                path=row["path"],
                mime_type=row["mime_type"],
                size_bytes=int(row["size_bytes"]),
                sha256=row["sha256"],
                created_at=_required(utc(row["created_at"])),
            )
            for row in result.mappings()
        ]


def _differing(keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """The keys whose values are not the same in every row."""
    return frozenset(key for key in keys if any(row[key] != rows[0][key] for row in rows[1:]))


def _written(
    prefix: str, keys: Sequence[str], arrays: frozenset[str], rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``lease_statement``'s values of ``keys``: a list with each row's for those in
    ``arrays``, the first row's (every row's) for the others."""
    return {
        prefix + key: [row[key] for row in rows] if key in arrays else rows[0][key] for key in keys
    }


def _is_json(column_type: Any) -> bool:
    return isinstance(column_type, sa.JSON)


def _values(attempt: TaskAttempt) -> dict[str, Any]:
    return {
        "task_id": attempt.task_id,
        "attempt": attempt.attempt,
        "agent_id": attempt.agent_id,
        "leased_at": attempt.leased_at,
        "expires_at": attempt.expires_at,
        "outcome": attempt.outcome.value if attempt.outcome else None,
        "finished_at": attempt.finished_at,
        "error": attempt.error,
        "output": attempt.output,
        "execution_time_ms": attempt.execution_time_ms,
        "tokens_used": attempt.tokens_used,
        "cost_usd": attempt.cost_usd,
    }


def _attempt(row: Mapping[Any, Any]) -> TaskAttempt:
    return TaskAttempt(
        task_id=row["task_id"],
        attempt=int(row["attempt"]),
        agent_id=row["agent_id"],
        leased_at=_required(utc(row["leased_at"])),
        expires_at=_required(utc(row["expires_at"])),
        outcome=AttemptOutcome(row["outcome"]) if row["outcome"] else None,
        finished_at=utc(row["finished_at"]),
        error=row["error"],
        output=dict(row["output"] or {}),
        execution_time_ms=row["execution_time_ms"],
        tokens_used=int(row["tokens_used"]),
        cost_usd=float(row["cost_usd"]),
        trouble=row["trouble"],
    )


def _required(value: datetime | None) -> datetime:
    assert value is not None
    return value


def _closing(closed: TaskAttempt) -> dict[str, Any]:
    """``_CLOSE``'s parameters: how the attempt ended, and which it is."""
    values = _values(closed)
    return {
        **{key: values[key] for key in _CLOSED},
        "w_task_id": closed.task_id,
        "w_attempt": closed.attempt,
    }
