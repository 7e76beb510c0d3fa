"""What a session's agents did and ask for: its diff, and their permission requests
(answered here by the operator, when the permission policy does not answer them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from ...domain.errors import ExecutorUnavailable, NotFound
from ...domain.events import LogStream
from ...domain.sessions.session import Session
from ...executors.opencode.client import OpenCodeError
from ...executors.opencode.runtime import opencode_client
from ...executors.opencode.server import MissingServer
from ...services.worktree_conflicts import worktree_conflicts
from ..dependencies import AppComponents, Sessions
from ..paths import API_PREFIX, SessionId
from ..schemas.common import error_responses
from ..schemas.workspaces import (
    PermissionRead,
    PermissionReplied,
    PermissionReplyBody,
    SessionDiff,
    SharedFilesRead,
    WorktreeConflictsRead,
)

router = APIRouter(prefix=f"{API_PREFIX}/sessions", tags=["sessions"])


async def _pending(request: Request, session: Session) -> tuple[list[dict[str, Any]], str]:
    """The permission requests waiting in the session's tree, and why there are none when
    there can be none. Only an OpenCode that is configured but cannot be asked is a 503:
    then requests may be waiting and nobody can tell."""
    if session.worktree is None:
        return [], "the session has no working tree yet"
    runtime = getattr(request.app.state, "opencode", None)
    if runtime is None or isinstance(runtime.server, MissingServer):
        return [], "no OpenCode is configured here, so no agent waits through it"
    opencode = opencode_client(runtime)
    try:
        pending = await opencode.permissions(session.worktree.path)
    except OpenCodeError as exc:
        raise ExecutorUnavailable(str(exc)) from exc
    return [item for item in pending if isinstance(item, dict)], "nothing is pending"


def _tree(session: Session) -> str:
    if session.worktree is None:
        raise NotFound(
            f"Session {session.id} has no working tree yet: it gets one when it first runs",
            {"session_id": str(session.id)},
        )
    return session.worktree.path


@router.get(
    "/{session_id}/diff",
    response_model=SessionDiff,
    summary="The session's changes",
    responses=error_responses(404, 409),
)
async def session_diff(
    session_id: SessionId, sessions: Sessions, built: AppComponents
) -> SessionDiff:
    """Everything the session's agents changed in its working tree (committed or not)
    since its branch started."""
    session = await sessions.get(session_id)
    tree = _tree(session)
    assert session.worktree is not None
    base = session.worktree.base_commit
    return SessionDiff(
        worktree=tree,
        branch=session.worktree.branch,
        base_commit=base,
        files=await built.trees.changed_files(Path(tree), base),
        diff=await built.trees.diff(Path(tree), base),
    )


@router.get(
    "/{session_id}/conflicts",
    response_model=WorktreeConflictsRead,
    summary="Other sessions on the same workspace that changed the same files",
    responses=error_responses(404),
)
async def session_conflicts(
    session_id: SessionId, sessions: Sessions, built: AppComponents
) -> WorktreeConflictsRead:
    """Every session works on a branch of its own, so nothing is merged behind your back;
    this names the other sessions on the same workspace whose branches change some of the
    same files as this one's (they would conflict when both are merged), with the files."""
    session = await sessions.get(session_id)
    _tree(session)
    found = await worktree_conflicts(built.uow, built.trees, session)
    return WorktreeConflictsRead(
        files=found.files,
        conflicts=[
            SharedFilesRead(
                session_id=shared.session.id,
                title=shared.session.title,
                status=shared.session.status,
                branch=shared.session.worktree.branch if shared.session.worktree else None,
                files=shared.files,
            )
            for shared in found.conflicts
        ],
    )


@router.get(
    "/{session_id}/permissions",
    response_model=list[PermissionRead],
    summary="Pending permission requests of the session's agents",
    responses=error_responses(404, 503),
)
async def list_permissions(
    session_id: SessionId, sessions: Sessions, request: Request
) -> list[PermissionRead]:
    """Requests the permission policy left to the operator; the agent waits for them.
    Empty when none wait, including when the session has no working tree yet or no
    OpenCode is configured; 503 only when a configured OpenCode cannot be reached."""
    pending, _ = await _pending(request, await sessions.get(session_id))
    return [
        PermissionRead(
            id=str(item.get("id")),
            permission=str(item.get("permission")),
            patterns=[str(p) for p in item.get("patterns") or []],
            opencode_session=str(item.get("sessionID")),
            metadata=dict(item.get("metadata") or {}),
        )
        for item in pending
    ]


@router.post(
    "/{session_id}/permissions",
    response_model=PermissionReplied,
    summary="Answer a permission request",
    responses=error_responses(404, 422, 503),
)
async def reply_permission(
    session_id: SessionId,
    body: PermissionReplyBody,
    sessions: Sessions,
    built: AppComponents,
    request: Request,
) -> PermissionReplied:
    """Allow (`once`, `always`) or refuse (`reject`) one pending request; the answer is
    written to the session's terminal. 404 when the session does not exist or the request
    is not pending in it; 503 only when a configured OpenCode cannot be reached."""
    session = await sessions.get(session_id)
    pending, none_because = await _pending(request, session)
    if not any(item.get("id") == body.request_id for item in pending):
        raise NotFound(
            f"No pending permission request {body.request_id!r} in session {session_id}: "
            + (none_because if not pending else "it was answered already, or never asked"),
            {"request_id": body.request_id, "session_id": str(session_id)},
        )
    assert session.worktree is not None  # requests are only ever found in a tree
    try:
        await opencode_client(request.app.state.opencode).reply_permission(
            body.request_id, session.worktree.path, body.reply, body.message
        )
    except OpenCodeError as exc:
        raise ExecutorUnavailable(str(exc)) from exc
    await built.events.append_log(
        session_id,
        LogStream.SYSTEM,
        f"operator answered permission request {body.request_id}: {body.reply}\n",
    )
    return PermissionReplied(request_id=body.request_id, reply=body.reply)
