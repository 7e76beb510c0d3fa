"""Contexts (user guide §7 "Context Management"): shared memory with conflict resolution."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, status

from ...domain.contexts.conflicts import ConflictStatus
from ...domain.contexts.context import ContextScope, ContextUpdate
from ...domain.contexts.version_vectors import VersionVector
from ...services.contexts import NewContext
from ..dependencies import Contexts
from ..paths import API_PREFIX
from ..schemas.common import error_responses
from ..schemas.contexts import (
    ConflictRead,
    ConflictResolve,
    ContextCreate,
    ContextPatch,
    ContextRead,
    EffectiveView,
    MergeRequest,
    MergeResultRead,
    WriteRead,
)

router = APIRouter(prefix=f"{API_PREFIX}/contexts", tags=["contexts"])

ContextId = Annotated[UUID, Path(description="The context's id (a UUID)")]
ConflictId = Annotated[UUID, Path(description="The conflict's id (a UUID)")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ContextRead,
    summary="Create a context",
    responses=error_responses(422),
)
async def create_context(body: ContextCreate, contexts: Contexts) -> ContextRead:
    """GLOBAL contexts have no owner; SESSION, AGENT and TEMPORARY ones belong to a
    session, an agent or a task. A TEMPORARY context may have a TTL and is removed when its
    task ends (COMPLETED, SKIPPED or CANCELLED)."""
    created = await contexts.create(
        NewContext(
            scope=body.scope,
            owner_id=body.owner_id,
            name=body.name,
            data=body.data,
            critical=body.critical,
            ttl_seconds=body.ttl_seconds,
            writer=body.writer,
        )
    )
    return ContextRead.of(created)


@router.get("", response_model=list[ContextRead], summary="List contexts")
async def list_contexts(
    contexts: Contexts,
    scope: ContextScope | None = None,
    owner_id: Annotated[UUID | None, Query(description="Session, agent or task id")] = None,
) -> list[ContextRead]:
    return [ContextRead.of(c) for c in await contexts.search(scope=scope, owner_id=owner_id)]


@router.get(
    "/resolve",
    response_model=EffectiveView,
    summary="The effective view an agent sees",
    responses=error_responses(422),
)
async def effective_view(
    contexts: Contexts,
    session_id: UUID | None = None,
    agent_id: UUID | None = None,
    task_id: UUID | None = None,
) -> EffectiveView:
    """GLOBAL < SESSION < AGENT < TEMPORARY: the contexts of each layer deep-merged in
    that order, a higher layer winning on the same key; `provenance` says which context
    each top-level key came from."""
    view, layers = await contexts.effective(
        session_id=session_id, agent_id=agent_id, task_id=task_id
    )
    return EffectiveView.of(view, layers)


@router.post(
    "/merge",
    response_model=MergeResultRead,
    summary="Merge several contexts",
    responses=error_responses(422),
)
async def merge_contexts(body: MergeRequest, contexts: Contexts) -> MergeResultRead:
    """The contexts' data merged (lowest layer first, then oldest) by the strategy, with
    every path whose values disagree. Nothing is stored."""
    return MergeResultRead.of(await contexts.merge(body.context_ids, body.strategy))


@router.get(
    "/{context_id}",
    response_model=ContextRead,
    summary="Get a context",
    responses=error_responses(404),
)
async def get_context(context_id: ContextId, contexts: Contexts) -> ContextRead:
    return ContextRead.of(await contexts.get(context_id))


@router.patch(
    "/{context_id}",
    response_model=WriteRead,
    summary="Write to a context",
    responses=error_responses(404, 409, 422),
)
async def write_context(context_id: ContextId, body: ContextPatch, contexts: Contexts) -> WriteRead:
    """A write is *stale* when `expected_version` differs from the context's version or
    `seen_vector` does not descend from its vector. Fresh writes replace the data
    (`deep_merge`: merge into it). Stale writes: `last_write_wins` keeps the later write
    (equal times: the greater writer id); `deep_merge` merges key by key; `manual` refuses
    with 409 `context_conflict` and stores the write as a conflict to resolve."""
    written = await contexts.update(
        context_id,
        ContextUpdate(
            writer=body.writer,
            data=body.data,
            at=contexts.now(),
            expected_version=body.expected_version,
            seen_vector=VersionVector(body.seen_vector) if body.seen_vector is not None else None,
            strategy=body.strategy,
        ),
    )
    return WriteRead(
        context=ContextRead.of(written.context),
        strategy=written.applied.strategy,
        stale=written.applied.stale,
        superseded=written.applied.superseded,
    )


@router.get(
    "/{context_id}/conflicts",
    response_model=list[ConflictRead],
    summary="A context's conflicts",
    responses=error_responses(404),
)
async def list_conflicts(
    context_id: ContextId,
    contexts: Contexts,
    status_filter: Annotated[ConflictStatus | None, Query(alias="status")] = None,
) -> list[ConflictRead]:
    return [ConflictRead.of(c) for c in await contexts.conflicts(context_id, status_filter)]


@router.post(
    "/{context_id}/conflicts/{conflict_id}/resolve",
    response_model=ContextRead,
    summary="Resolve a conflict",
    responses=error_responses(404, 409, 422),
)
async def resolve_conflict(
    context_id: ContextId, conflict_id: ConflictId, body: ConflictResolve, contexts: Contexts
) -> ContextRead:
    """Keep the `current` data, take the `incoming` write, or write `custom` data; a new
    version either way. A conflict is resolved once (409 after)."""
    resolved = await contexts.resolve(
        context_id, conflict_id, choose=body.choose, by=body.writer, data=body.data
    )
    return ContextRead.of(resolved)
