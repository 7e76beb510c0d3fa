"""Context use cases: scoped shared memory that several agents write without losing work.

How a write is applied (replace, deep merge, last write wins, or a stored conflict) is
the domain's rule (``domain/contexts/context.py``). This service makes it safe under concurrency:
the rule is applied to the row as it is in the database and written back guarded by the
version it read; when another write committed in between, the rule is applied again to
the new row. So concurrent writers are serialised by the database, and each one's
outcome is what the rule says for the state it really landed on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import structlog

from ..domain.contexts import events as context_events
from ..domain.contexts.conflicts import ConflictRecord, ConflictStatus, conflict_record
from ..domain.contexts.context import (
    Applied,
    Context,
    ContextScope,
    ContextUpdate,
    MergeStrategy,
    Resolution,
    apply_update,
    new_context,
    resolve_conflict,
)
from ..domain.contexts.merge import LayeredView, MergeResult, layered_view, merge_contexts
from ..domain.errors import Conflict, InvalidInput, NotFound
from .ports import Clock, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.contexts")

# Concurrent writers that keep landing between our read and our write: give up after
# this many tries (each one means another write did commit).
_ATTEMPTS = 50


class ContextConflictError(Conflict):
    """A stale write under ``manual``: stored as a conflict for an operator to settle."""

    code = "context_conflict"


@dataclass(frozen=True, slots=True)
class NewContext:
    scope: ContextScope
    name: str
    data: dict[str, Any]
    owner_id: UUID | None = None
    critical: bool = False
    ttl_seconds: float | None = None
    writer: str | None = None


@dataclass(frozen=True, slots=True)
class Written:
    context: Context
    applied: Applied


class ContextService:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    async def create(self, draft: NewContext) -> Context:
        now = self._clock()
        ttl = timedelta(seconds=draft.ttl_seconds) if draft.ttl_seconds is not None else None
        context = new_context(
            id=uuid4(),
            scope=draft.scope,
            owner_id=draft.owner_id,
            name=draft.name,
            data=draft.data,
            now=now,
            critical=draft.critical,
            ttl=ttl,
            creator=draft.writer,
        )
        async with self._uow() as uow:
            await _check_owner(uow, context)
            await uow.contexts.add(context)
            await uow.events.append([context_events.context_created(context)])
            await uow.commit()
        log.info("context_created", context_id=str(context.id), scope=context.scope.value)
        return context

    async def get(self, context_id: UUID) -> Context:
        async with self._uow() as uow:
            await self._purge(uow)
            context = await _found(uow, context_id)
            await uow.commit()
        return context

    async def search(
        self, *, scope: ContextScope | None = None, owner_id: UUID | None = None
    ) -> list[Context]:
        async with self._uow() as uow:
            await self._purge(uow)
            found = await uow.contexts.find(
                scope=scope, owner_ids=[owner_id] if owner_id is not None else []
            )
            await uow.commit()
        return found

    async def update(self, context_id: UUID, update: ContextUpdate) -> Written:
        """Apply ``update`` by its strategy; a stale ``manual`` write is stored as a
        conflict and raised as ``ContextConflictError`` (409) with both versions."""
        for _ in range(_ATTEMPTS):
            async with self._uow() as uow:
                context = await _found(uow, context_id)
                outcome = apply_update(context, update)
                if not isinstance(outcome, Applied):
                    record = conflict_record(uuid4(), outcome)
                    await uow.contexts.add_conflict(record)
                    await uow.events.append([context_events.context_conflict(context, record)])
                    await uow.commit()
                    raise _conflict_error(record, context)
                if outcome.context is context:  # superseded: nothing to write
                    return Written(context, outcome)
                if await uow.contexts.save(context, outcome.context):
                    await uow.events.append(
                        [
                            context_events.context_updated(
                                outcome.context, update.writer, outcome.strategy, outcome.stale
                            )
                        ]
                    )
                    await uow.commit()
                    return Written(outcome.context, outcome)
        raise Conflict(
            f"Context {context_id} is being written too often to apply this write; retry",
            {"context_id": str(context_id)},
        )

    async def conflicts(
        self, context_id: UUID, status: ConflictStatus | None = None
    ) -> list[ConflictRecord]:
        async with self._uow.reader() as uow:
            await _found(uow, context_id)
            return await uow.contexts.conflicts(context_id, status)

    async def resolve(
        self,
        context_id: UUID,
        conflict_id: UUID,
        *,
        choose: Resolution,
        by: str,
        data: dict[str, Any] | None = None,
    ) -> Context:
        """Settle a stored conflict: keep the current data, take the refused write, or
        write custom data. Either way a new version is written."""
        now = self._clock()
        async with self._uow() as uow:
            context = await _found(uow, context_id)
            record = await uow.contexts.conflict(conflict_id)
            if record is None or record.context_id != context_id:
                raise NotFound(
                    f"Conflict {conflict_id} of context {context_id} does not exist",
                    {"context_id": str(context_id), "conflict_id": str(conflict_id)},
                )
            if record.status != ConflictStatus.OPEN:
                raise Conflict(
                    f"Conflict {conflict_id} was already resolved ({record.resolution})",
                    {"conflict_id": str(conflict_id), "resolved_by": record.resolved_by},
                )
            resolved = resolve_conflict(
                context,
                record.incoming,
                choose=choose,
                by=by,
                at=now,
                custom_data=data,
                incoming_vector=record.incoming_vector,
            )
            settled = replace(
                record,
                status=ConflictStatus.RESOLVED,
                resolution=choose,
                resolved_by=by,
                resolved_at=now,
            )
            if not await uow.contexts.settle(settled) or not await uow.contexts.save(
                context, resolved
            ):
                raise Conflict(
                    f"Context {context_id} or its conflict changed meanwhile; reload and retry",
                    {"context_id": str(context_id), "conflict_id": str(conflict_id)},
                )
            await uow.events.append([context_events.context_resolved(resolved, settled, now)])
            await uow.commit()
        log.info("context_conflict_resolved", context_id=str(context_id), choose=choose.value)
        return resolved

    async def merge(self, context_ids: Sequence[UUID], strategy: MergeStrategy) -> MergeResult:
        async with self._uow.reader() as uow:
            found = [await _found(uow, cid, "context_ids") for cid in dict.fromkeys(context_ids)]
        return merge_contexts(found, strategy)

    async def effective(
        self,
        *,
        session_id: UUID | None = None,
        agent_id: UUID | None = None,
        task_id: UUID | None = None,
    ) -> tuple[LayeredView, list[Context]]:
        """What an agent working on ``task_id`` of ``session_id`` sees: GLOBAL, then the
        session's, the agent's and the task's TEMPORARY contexts, later layers winning."""
        owners = {
            ContextScope.SESSION: session_id,
            ContextScope.AGENT: agent_id,
            ContextScope.TEMPORARY: task_id,
        }
        async with self._uow() as uow:
            await self._purge(uow)
            layers = await uow.contexts.find(scope=ContextScope.GLOBAL)
            for scope, owner in owners.items():
                if owner is not None:
                    layers += await uow.contexts.find(scope=scope, owner_ids=[owner])
            await uow.commit()
        return layered_view(layers, self._clock()), layers

    async def _purge(self, uow: UnitOfWork) -> None:
        removed = await uow.contexts.delete_expired(self._clock())
        if removed:
            log.info("temporary_contexts_expired", removed=removed)


async def _found(uow: UnitOfWork, context_id: UUID, field_name: str | None = None) -> Context:
    context = await uow.contexts.get(context_id)
    if context is not None:
        return context
    if field_name is not None:
        raise InvalidInput(f"Context {context_id} does not exist", {"field": field_name})
    raise NotFound(f"Context {context_id} does not exist", {"context_id": str(context_id)})


async def _check_owner(uow: UnitOfWork, context: Context) -> None:
    """SESSION and TEMPORARY contexts belong to a session or a task that must exist.
    Agents are not registered yet (their registry comes later), so any id is taken."""
    owner = context.owner_id
    if owner is None:
        return
    if context.scope == ContextScope.SESSION and await uow.sessions.get(owner) is None:
        raise InvalidInput(f"Session {owner} does not exist", {"field": "owner_id"})
    if context.scope == ContextScope.TEMPORARY and await uow.tasks.get(owner) is None:
        raise InvalidInput(f"Task {owner} does not exist", {"field": "owner_id"})


def _conflict_error(record: ConflictRecord, context: Context) -> ContextConflictError:
    return ContextConflictError(
        f"Context {context.id} changed since writer {record.writer!r} read it "
        f"({record.reason}); the write is kept as conflict {record.id} for an operator",
        {
            "conflict_id": str(record.id),
            "context_id": str(context.id),
            "current_version": context.version,
            "current": context.data,
            "incoming": record.incoming,
            "reason": record.reason,
        },
    )
