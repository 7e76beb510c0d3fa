"""Session management (user guide §7): create, list, read, lifecycle verbs, history,
checkpoints, stats and the state reference table."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from ...domain.errors import InvalidInput
from ...domain.priorities import Priority
from ...domain.sessions.actions import SessionAction
from ...domain.sessions.states import STATE_TABLE, SessionState
from ...services.ports import SessionQuery
from ...services.session_lineage import Fork
from ...services.sessions import NewSession
from ..dependencies import AppComponents, Sessions
from ..paths import API_PREFIX, SessionId
from ..schemas.checkpoints import CheckpointCreate, CheckpointPage, CheckpointRead
from ..schemas.common import error_responses, storable_text
from ..schemas.effects import EffectPage, EffectRead
from ..schemas.sessions import (
    ActionRequest,
    FailRequest,
    ForkRequest,
    LineageRead,
    RetryRequest,
    SessionCreate,
    SessionPage,
    SessionRead,
    SessionStatsRead,
    StateRead,
    TransitionRead,
)
from ..workspaces import checked_workspace

# The full prefix lives on the router (not on include_router) so that the route template
# seen by the metrics middleware is the whole path.
router = APIRouter(prefix=f"{API_PREFIX}/sessions", tags=["sessions"])

MAX_PAGE_SIZE = 100
IF_MATCH_PATTERN = r'^\s*(?:W/)?"?(\d+)"?\s*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)

IdempotencyKey = Annotated[
    str | None,
    # Stored with the session, so it obeys the rule bodies do (schemas.common).
    AfterValidator(storable_text),
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a creation safely: the same key returns the same session",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='Expected session version, e.g. `"3"`'),
]
Page = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionRead,
    summary="Create a session",
    responses={
        200: {"model": SessionRead, "description": "Replay of an earlier Idempotency-Key"},
        **error_responses(409, 413, 422),
    },
)
async def create_session(
    body: SessionCreate,
    sessions: Sessions,
    built: AppComponents,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SessionRead:
    """Record a new session in PENDING (or start it at once with `auto_start`).

    With an `Idempotency-Key` header, repeating the request returns the first session
    with 200 instead of creating a second one; the same key with another body is a 409.
    """
    outcome = await sessions.create(
        NewSession(
            title=body.title,
            initial_prompt=body.initial_prompt,
            priority=body.priority,
            workspace=await checked_workspace(
                body.workspace,
                built.settings.workspace_root_paths,
                built.settings.orchestrator_home,
            ),
            metadata=body.metadata,
            auto_start=body.auto_start,
            options=body.options(),
        ),
        idempotency_key=idempotency_key,
    )
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/v1/sessions/{outcome.session.id}"
    return SessionRead.of(outcome.session)


@router.get("", response_model=SessionPage, summary="List sessions", responses=error_responses(422))
async def list_sessions(
    sessions: Sessions,
    status_filter: Annotated[
        list[SessionState] | None,
        Query(alias="status", description="Repeat to filter by several states"),
    ] = None,
    priority: Annotated[
        list[Priority] | None, Query(description="Repeat to filter by several priorities")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Text searched in title and prompt")
    ] = None,
    page: Page = 1,
    page_size: PageSize = 20,
) -> SessionPage:
    """Sessions newest first, filtered by state(s), priority(ies) and text."""
    items, total = await sessions.search(
        SessionQuery(
            statuses=status_filter or (),
            priorities=priority or (),
            text=q or None,
            offset=(page - 1) * page_size,
            limit=page_size,
        )
    )
    return SessionPage(
        items=[SessionRead.of(s) for s in items], total=total, page=page, page_size=page_size
    )


@router.get("/stats", response_model=SessionStatsRead, summary="Aggregate statistics")
async def session_stats(sessions: Sessions) -> SessionStatsRead:
    """Count per state and per outcome, success rate, average duration, and token and cost
    totals. The success rate is succeeded (COMPLETED, PARTIALLY_COMPLETED) over succeeded +
    failed (FAILED, TIMEOUT): a session the operator stopped or cancelled, or one the
    system orphaned, is counted apart and does not lower it."""
    return SessionStatsRead.of(await sessions.stats())


@router.get("/states", response_model=list[StateRead], summary="The state reference table")
async def session_states() -> list[StateRead]:
    """The 12 states with emoji, colour, terminal flag, category, reachable states and
    the operator verbs each accepts."""
    return [StateRead.of(info) for info in STATE_TABLE.values()]


@router.get(
    "/{session_id}",
    response_model=SessionRead,
    summary="Get a session",
    responses=error_responses(404, 422),
)
async def get_session(session_id: SessionId, sessions: Sessions) -> SessionRead:
    return SessionRead.of(await sessions.get(session_id))


@router.get(
    "/{session_id}/transitions",
    response_model=list[TransitionRead],
    summary="Transition history",
    responses=error_responses(404, 422),
)
async def session_transitions(session_id: SessionId, sessions: Sessions) -> list[TransitionRead]:
    """The append-only history, oldest first; `seq` runs 1, 2, 3... with no gap."""
    return [TransitionRead.of(record) for record in await sessions.history(session_id)]


def _expected_version(body: ActionRequest | None, if_match: str | None) -> int | None:
    from_body = body.expected_version if body else None
    if if_match is None:
        return from_body
    match = _IF_MATCH.match(if_match)
    if match is None:
        raise InvalidInput(
            f'If-Match must be a session version such as "3", got {if_match!r}',
            {"header": "If-Match"},
        )
    from_header = int(match.group(1))
    if from_body is not None and from_body != from_header:
        raise InvalidInput(
            f"expected_version {from_body} and If-Match {from_header} disagree",
            {"expected_version": from_body, "if_match": from_header},
        )
    return from_header


_ACTION_DOCS = {
    SessionAction.START: (
        "Start a session",
        "PENDING -> RUNNING, or QUEUED when MAX_CONCURRENT_SESSIONS are running; "
        "QUEUED -> RUNNING when a slot is free. On a FAILED, TIMEOUT or STOPPED session, "
        "creates and starts its retry (201).",
    ),
    SessionAction.PAUSE: ("Pause a running session", "RUNNING -> PAUSED."),
    SessionAction.RESUME: (
        "Resume a session",
        "PAUSED, DEGRADED or PARTIALLY_COMPLETED -> RUNNING (409 when no slot is free).",
    ),
    SessionAction.COMPLETE: (
        "Mark a session complete",
        "RUNNING, DEGRADED or PARTIALLY_COMPLETED -> COMPLETED.",
    ),
    SessionAction.CANCEL: ("Cancel a session", "PENDING, QUEUED or PAUSED -> CANCELLED."),
    SessionAction.STOP: ("Stop a session", "RUNNING, PAUSED or DEGRADED -> STOPPED."),
}


def _action_route(action: SessionAction) -> None:
    summary, description = _ACTION_DOCS[action]

    async def endpoint(
        session_id: SessionId,
        sessions: Sessions,
        body: Annotated[ActionRequest | None, Body()] = None,
        if_match: IfMatch = None,
    ) -> SessionRead | JSONResponse:
        expected = _expected_version(body, if_match)
        reason = body.reason if body else None
        if action == SessionAction.START:
            started = await sessions.start(session_id, reason=reason, expected_version=expected)
            if started.retried:
                return JSONResponse(
                    SessionRead.of(started.session).model_dump(mode="json"),
                    status_code=status.HTTP_201_CREATED,
                )
            return SessionRead.of(started.session)
        moved = await sessions.act(session_id, action, reason=reason, expected_version=expected)
        return SessionRead.of(moved)

    endpoint.__name__ = f"{action.value}_session"
    router.add_api_route(
        f"/{{session_id}}/{action.value}",
        endpoint,
        methods=["POST"],
        response_model=SessionRead,
        summary=summary,
        description=description,
        responses={
            **(
                {201: {"model": SessionRead, "description": "Retry created"}}
                if action == SessionAction.START
                else {}
            ),
            **error_responses(404, 409, 422),
        },
    )


for _action in _ACTION_DOCS:
    _action_route(_action)


@router.post(
    "/{session_id}/fail",
    response_model=SessionRead,
    summary="Mark a session failed",
    responses=error_responses(404, 409, 422),
)
async def fail_session(
    session_id: SessionId, body: FailRequest, sessions: Sessions, if_match: IfMatch = None
) -> SessionRead:
    """PENDING, QUEUED, RUNNING or DEGRADED -> FAILED, with the reason recorded."""
    moved = await sessions.act(
        session_id,
        SessionAction.FAIL,
        reason=body.reason,
        expected_version=_expected_version(body, if_match),
    )
    return SessionRead.of(moved)


@router.post(
    "/{session_id}/retry",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionRead,
    summary="Retry a failed session",
    responses=error_responses(404, 409, 422),
)
async def retry_session(
    session_id: SessionId,
    sessions: Sessions,
    body: Annotated[RetryRequest | None, Body()] = None,
) -> SessionRead:
    """Create the next attempt of a FAILED, TIMEOUT or STOPPED session, restored from its
    last checkpoint. The old session is left as it was; a session is retried once."""
    fresh = await sessions.retry(session_id, start=body.start if body else False)
    return SessionRead.of(fresh)


@router.post(
    "/{session_id}/fork",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionRead,
    summary="Fork a session from one of its checkpoints",
    responses=error_responses(404, 409, 422),
)
async def fork_session(session_id: SessionId, body: ForkRequest, sessions: Sessions) -> SessionRead:
    """Create a new session that starts from the checkpoint: the files of its working
    tree at that checkpoint's commit and the tasks finished by then (not done again), with
    an optional instruction for the tasks still to do and other options. The source
    session, in whatever state, is left as it is; it may be forked any number of times."""
    fresh = await sessions.fork(
        session_id,
        Fork(
            checkpoint_id=body.checkpoint_id,
            amendment=body.amendment,
            overrides=body.overrides(),
            title=body.title,
            start=body.start,
        ),
    )
    return SessionRead.of(fresh)


@router.get(
    "/{session_id}/lineage",
    response_model=LineageRead,
    summary="The session's retries and forks",
    responses=error_responses(404, 422),
)
async def session_lineage(session_id: SessionId, sessions: Sessions) -> LineageRead:
    """Where the session comes from (the session it retries or was forked from, and the
    checkpoint it started from) and what came of it (its retry, its forks)."""
    session = await sessions.get(session_id)
    return LineageRead(
        retry_of=session.retry_of,
        retried_as=await sessions.retried_as(session_id),
        forked_from=session.forked_from,
        restored_from_checkpoint=session.restored_from_checkpoint,
        forks=await sessions.forks_of(session_id),
    )


@router.post(
    "/{session_id}/checkpoints",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckpointRead,
    summary="Create a checkpoint",
    responses=error_responses(404, 409, 413, 422),
)
async def create_checkpoint(
    session_id: SessionId, body: CheckpointCreate, sessions: Sessions
) -> CheckpointRead:
    """Save a checkpoint (data up to 1 MiB). Only the newest CHECKPOINT_RETENTION
    (default 100) are kept per session."""
    checkpoint = await sessions.add_checkpoint(
        session_id, label=body.label, reason=body.reason, data=body.data
    )
    return CheckpointRead.of(checkpoint)


@router.get(
    "/{session_id}/checkpoints",
    response_model=CheckpointPage,
    summary="List checkpoints",
    responses=error_responses(404, 422),
)
async def list_checkpoints(
    session_id: SessionId, sessions: Sessions, page: Page = 1, page_size: PageSize = 20
) -> CheckpointPage:
    """Checkpoints newest first."""
    items, total = await sessions.checkpoints(
        session_id, offset=(page - 1) * page_size, limit=page_size
    )
    return CheckpointPage(
        items=[CheckpointRead.of(c) for c in items], total=total, page=page, page_size=page_size
    )


@router.get(
    "/{session_id}/effects",
    response_model=EffectPage,
    summary="The session's side-effect ledger",
    responses=error_responses(404, 422),
)
async def list_effects(
    session_id: SessionId,
    sessions: Sessions,
    built: AppComponents,
    page: Page = 1,
    page_size: PageSize = 20,
) -> EffectPage:
    """What the orchestrator did outside its database for the session, oldest first:
    each task's files written into the workspace and each checkpoint's commit. Each is
    recorded under an idempotency key before it is done and marked DONE after, so a
    restart, retry or fork never does one twice (see docs/reliability.md)."""
    await sessions.get(session_id)
    items, total = await built.ledger.of_session(
        session_id, offset=(page - 1) * page_size, limit=page_size
    )
    return EffectPage(
        items=[EffectRead.of(e) for e in items], total=total, page=page, page_size=page_size
    )
