"""What a session's agents did and ask for: its diff, and their permission requests
(answered here by the operator, when the permission policy does not answer them)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request

from ...domain.errors import ExecutorUnavailable, NotFound
from ...domain.events import LogStream
from ...domain.session import Session
from ...executors.opencode.client import OpenCodeClient, OpenCodeError
from ...executors.opencode.runtime import opencode_client
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


def _opencode(request: Request) -> OpenCodeClient:
    """The OpenCode client, asked for only once the session is known to have a tree (a
    request about a session that does not exist is a 404 whatever OpenCode's state)."""
    return opencode_client(getattr(request.app.state, "opencode", None))


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
    """Requests the permission policy left to the operator; the agent waits for them."""
    tree = _tree(await sessions.get(session_id))
    opencode = _opencode(request)
    try:
        pending = await opencode.permissions(tree)
    except OpenCodeError as exc:
        raise ExecutorUnavailable(str(exc)) from exc
    return [
        PermissionRead(
            id=str(item.get("id")),
            permission=str(item.get("permission")),
            patterns=[str(p) for p in item.get("patterns") or []],
            opencode_session=str(item.get("sessionID")),
            metadata=dict(item.get("metadata") or {}),
        )
        for item in pending
        if isinstance(item, dict)
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
    written to the session's terminal."""
    tree = _tree(await sessions.get(session_id))
    opencode = _opencode(request)
    try:
        pending = await opencode.permissions(tree)
        if not any(isinstance(p, dict) and p.get("id") == body.request_id for p in pending):
            raise NotFound(
                f"No pending permission request {body.request_id!r} in session {session_id}",
                {"request_id": body.request_id},
            )
        await opencode.reply_permission(body.request_id, tree, body.reply, body.message)
    except OpenCodeError as exc:
        raise ExecutorUnavailable(str(exc)) from exc
    await built.events.append_log(
        session_id,
        LogStream.SYSTEM,
        f"operator answered permission request {body.request_id}: {body.reply}\n",
    )
    return PermissionReplied(request_id=body.request_id, reply=body.reply)
