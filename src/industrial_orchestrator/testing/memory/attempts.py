"""Task attempts (leases) and their artifacts (``storage/attempt_repository.py`` in
memory): an attempt is written open, then closed once, guarded by its having no outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from ...domain.agents.records import FinishedAttempt, duration_ms
from ...domain.sessions.session import Session
from ...domain.tasks.artifacts import Artifact
from ...domain.tasks.attempts import AttemptOutcome, TaskAttempt
from ...domain.tasks.loop_guard import GUARD_ERROR_PREFIX
from ...domain.tasks.task import FINISHED_STATUSES, Task, TaskType
from ...services.ports import (
    LeaseRefused,
    NewLease,
    OpenedLease,
    StoredArtifact,
    check_one_try,
)
from .agents import MemoryAgentRepository
from .events import MemoryEventRepository
from .store import IntegrityViolation, Transaction, json_copy
from .tasks import TASKS, MemoryTaskRepository

ATTEMPTS = "task_attempts"
ARTIFACTS = "task_artifacts"

_RECORDED = frozenset({AttemptOutcome.COMPLETED, AttemptOutcome.FAILED, AttemptOutcome.EXPIRED})


@dataclass(frozen=True, slots=True)
class _StoredArtifact:
    task_id: UUID
    attempt: int
    artifact: Artifact
    created_at: datetime


def _copied(attempt: TaskAttempt) -> TaskAttempt:
    return attempt.evolve(output=json_copy(attempt.output))


class MemoryAttemptRepository:
    def __init__(self, tx: Transaction, events: MemoryEventRepository) -> None:
        self._tx = tx
        self._events = events
        """The transaction's event log, which a lease's events join."""

    async def open(self, lease: NewLease) -> OpenedLease | LeaseRefused:
        # One writer at a time: no other transaction holds a row.
        tasks = MemoryTaskRepository(self._tx)
        if not await tasks.save(lease.task, lease.running):
            return LeaseRefused.TASK_TAKEN
        if not await MemoryAgentRepository(self._tx).save(lease.agent, lease.booked):
            return LeaseRefused.AGENT_CHANGED
        await self.add(lease.attempt)
        await self._events.append(lease.events)
        dependencies = await tasks.get_many(lease.running.depends_on)
        return OpenedLease([dep for dep in dependencies if dep.status in FINISHED_STATUSES])

    async def open_first(
        self, leases: Sequence[NewLease]
    ) -> tuple[NewLease, OpenedLease] | LeaseRefused:
        check_one_try(leases)
        for lease in leases:
            opened = await self.open(lease)
            if opened is not LeaseRefused.TASK_TAKEN:
                return opened if isinstance(opened, LeaseRefused) else (lease, opened)
        return LeaseRefused.TASK_TAKEN

    def _open_of(self, agent_id: UUID) -> list[TaskAttempt]:
        found: list[TaskAttempt] = self._tx.select(
            ATTEMPTS, lambda each: each.agent_id == agent_id and each.outcome is None
        )
        return sorted(found, key=lambda each: (each.leased_at, each.task_id))

    async def add(self, attempt: TaskAttempt) -> None:
        key = (attempt.task_id, attempt.attempt)
        if self._tx.get(ATTEMPTS, key) is not None:
            raise IntegrityViolation(f"attempt {key} exists")
        if self._tx.get(TASKS, attempt.task_id) is None:
            raise IntegrityViolation(f"attempt at unknown task {attempt.task_id}")
        # ``trouble`` is not written by an insert (only ``set_trouble`` writes it).
        self._tx.put(ATTEMPTS, key, _copied(attempt.evolve(trouble=None)))

    async def get(self, task_id: UUID, attempt: int) -> TaskAttempt | None:
        found: TaskAttempt | None = self._tx.get(ATTEMPTS, (task_id, attempt))
        return _copied(found) if found else None

    async def with_task(self, task_id: UUID) -> tuple[Task | None, TaskAttempt | None]:
        task = await MemoryTaskRepository(self._tx).get(task_id)
        if task is None or not task.attempt:
            return task, None
        return task, await self.get(task.id, task.attempt)

    async def in_session(
        self, session_id: UUID, task_id: UUID
    ) -> tuple[Session | None, list[Task], TaskAttempt | None]:
        session, found = await MemoryTaskRepository(self._tx).with_session(session_id)
        task = next((t for t in found if t.id == task_id), None)
        if task is None or not task.attempt:
            return session, found, None
        return session, found, await self.get(task.id, task.attempt)

    async def of_task(self, task_id: UUID) -> list[TaskAttempt]:
        found: list[TaskAttempt] = self._tx.select(ATTEMPTS, lambda each: each.task_id == task_id)
        return [_copied(each) for each in sorted(found, key=lambda each: each.attempt)]

    async def open_of_agent(self, agent_id: UUID) -> list[TaskAttempt]:
        return [_copied(each) for each in self._open_of(agent_id)]

    async def open_of_tasks(self, task_ids: Sequence[UUID]) -> list[TaskAttempt]:
        wanted = set(task_ids)
        found: list[TaskAttempt] = self._tx.select(
            ATTEMPTS, lambda each: each.outcome is None and each.task_id in wanted
        )
        found.sort(key=lambda each: (each.task_id, each.attempt))
        return [_copied(each) for each in found]

    async def expired(self, before: datetime, *, limit: int) -> list[TaskAttempt]:
        found: list[TaskAttempt] = self._tx.select(
            ATTEMPTS, lambda each: each.outcome is None and each.expires_at < before
        )
        # The SQL one orders by expiry alone; ties here by task and attempt.
        found.sort(key=lambda each: (each.expires_at, each.task_id, each.attempt))
        return [_copied(each) for each in found[:limit]]

    async def renew(
        self, agent_id: UUID, expires_at: datetime, *, only: Sequence[UUID] | None = None
    ) -> list[TaskAttempt]:
        wanted = None if only is None else set(only)
        renewed: list[TaskAttempt] = []
        for each in self._open_of(agent_id):
            if wanted is None or each.task_id in wanted:
                each = each.evolve(expires_at=expires_at)
                self._tx.put(ATTEMPTS, (each.task_id, each.attempt), each)
                renewed.append(_copied(each))
        return renewed

    async def close_at_commit(self, closed: TaskAttempt, *, stale: Exception) -> None:
        # In process a write costs no round trip: it runs at once.
        if not await self.close(closed):
            raise stale

    async def close(self, closed: TaskAttempt) -> bool:
        key = (closed.task_id, closed.attempt)
        current: TaskAttempt | None = self._tx.get(ATTEMPTS, key)
        if current is None or current.outcome is not None:
            return False
        self._tx.put(
            ATTEMPTS,
            key,
            current.evolve(
                outcome=closed.outcome,
                finished_at=closed.finished_at,
                error=closed.error,
                output=json_copy(closed.output),
                execution_time_ms=closed.execution_time_ms,
                tokens_used=closed.tokens_used,
                cost_usd=closed.cost_usd,
            ),
        )
        return True

    async def set_trouble(self, task_id: UUID, attempt: int, trouble: str | None) -> bool:
        current: TaskAttempt | None = self._tx.get(ATTEMPTS, (task_id, attempt))
        if current is None or current.outcome is not None:
            return False
        self._tx.put(ATTEMPTS, (task_id, attempt), current.evolve(trouble=trouble))
        return True

    async def add_artifacts(
        self, attempt: TaskAttempt, artifacts: Sequence[Artifact], at: datetime
    ) -> None:
        if not artifacts:
            return
        if self._tx.get(ATTEMPTS, (attempt.task_id, attempt.attempt)) is None:
            raise IntegrityViolation(f"artifacts of unknown attempt {attempt.attempt}")
        for artifact in artifacts:
            key = (attempt.task_id, attempt.attempt, artifact.path)
            if self._tx.get(ARTIFACTS, key) is not None:
                raise IntegrityViolation(f"artifact {key} exists")
            self._tx.put(
                ARTIFACTS, key, _StoredArtifact(attempt.task_id, attempt.attempt, artifact, at)
            )

    def _artifacts_of(self, task_ids: set[UUID]) -> list[_StoredArtifact]:
        found: list[_StoredArtifact] = self._tx.select(
            ARTIFACTS, lambda each: each.task_id in task_ids
        )
        return sorted(found, key=lambda each: (each.attempt, each.artifact.path))

    async def artifacts(self, task_id: UUID) -> list[StoredArtifact]:
        return [
            StoredArtifact(
                attempt=each.attempt,
                path=each.artifact.path,
                mime_type=each.artifact.mime_type,
                size_bytes=each.artifact.size_bytes,
                sha256=each.artifact.sha256,
                created_at=each.created_at,
            )
            for each in self._artifacts_of({task_id})
        ]

    async def delivered(self, task_id: UUID, attempt: int) -> list[Artifact]:
        return [each.artifact for each in self._artifacts_of({task_id}) if each.attempt == attempt]

    async def touched(self, task_ids: Sequence[UUID]) -> dict[UUID, set[str]]:
        paths: dict[UUID, set[str]] = {}
        for each in self._artifacts_of(set(task_ids)):
            paths.setdefault(each.task_id, set()).add(each.artifact.path)
        return paths

    async def stopped_by_guard(self, task_ids: Sequence[UUID]) -> dict[UUID, set[UUID]]:
        wanted = set(task_ids)
        stopped: dict[UUID, set[UUID]] = {}
        for each in self._tx.rows(ATTEMPTS):
            if (
                each.task_id in wanted
                and each.outcome is AttemptOutcome.FAILED
                and (each.error or "").startswith(GUARD_ERROR_PREFIX)
            ):
                stopped.setdefault(each.task_id, set()).add(each.agent_id)
        return stopped

    async def recent_results(
        self,
        *,
        agent_ids: Sequence[UUID] | None,
        task_types: Sequence[TaskType] | None,
        since: datetime,
        per_pair: int,
    ) -> list[FinishedAttempt]:
        agents = None if agent_ids is None else set(agent_ids)
        types = None if task_types is None else set(task_types)
        pairs: dict[tuple[UUID, TaskType], list[TaskAttempt]] = {}
        for each in self._tx.rows(ATTEMPTS):
            task: Task | None = self._tx.get(TASKS, each.task_id)
            if (
                task is None
                or each.outcome not in _RECORDED
                or each.finished_at is None
                or each.finished_at < since
                or (agents is not None and each.agent_id not in agents)
                or (types is not None and task.task_type not in types)
            ):
                continue
            pairs.setdefault((each.agent_id, task.task_type), []).append(each)
        found: list[FinishedAttempt] = []
        for (agent_id, task_type), attempts in pairs.items():
            # Newest first: finished_at descending, task ascending, attempt descending.
            attempts.sort(key=lambda each: -each.attempt)
            attempts.sort(key=lambda each: each.task_id)
            attempts.sort(key=lambda each: each.finished_at or since, reverse=True)
            for each in attempts[:per_pair]:
                found.append(
                    FinishedAttempt(
                        agent_id=agent_id,
                        task_type=task_type,
                        succeeded=each.outcome is AttemptOutcome.COMPLETED,
                        duration_ms=duration_ms(
                            each.execution_time_ms, each.leased_at, each.finished_at
                        ),
                        cost_usd=each.cost_usd,
                    )
                )
        return found
