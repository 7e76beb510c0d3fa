"""A session's working tree and the permission requests of its agents."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from ...domain.sessions.states import SessionState
from .common import StrictModel


class SharedFilesRead(BaseModel):
    session_id: UUID
    title: str
    status: SessionState
    branch: str | None = Field(description="Its branch, which would conflict with this one's")
    files: list[str] = Field(description="Paths both sessions changed")


class WorktreeConflictsRead(BaseModel):
    files: list[str] = Field(description="Paths this session changed since its base commit")
    conflicts: list[SharedFilesRead] = Field(
        description="Other sessions on the same workspace (not cancelled) that changed some "
        "of the same paths: merging both branches would conflict there"
    )


class SessionDiff(BaseModel):
    worktree: str = Field(description="The session's own git working tree")
    branch: str = Field(description="Its branch, left in the repository for you to merge")
    base_commit: str = Field(description="The commit the branch started from")
    files: list[str] = Field(description="Paths added, modified or deleted since base_commit")
    diff: str = Field(
        description="Unified diff of the tree against base_commit (cut at 1 MiB, with a line "
        "saying so)"
    )


class PermissionRead(BaseModel):
    id: str = Field(description="The request's id, to answer it with")
    permission: str = Field(description="What the agent wants to do, e.g. bash, edit")
    patterns: list[str] = Field(description="What it wants to do it on (commands, paths)")
    opencode_session: str
    metadata: dict[str, Any]


class PermissionReplyBody(StrictModel):
    request_id: str = Field(min_length=1, max_length=200)
    reply: Literal["once", "always", "reject"] = Field(
        description="`once`: allow this request; `always`: allow it and the same again; "
        "`reject`: refuse it (the agent is told)"
    )
    message: str | None = Field(
        None, max_length=4000, description="Told to the agent with a rejection"
    )


class PermissionReplied(BaseModel):
    request_id: str
    reply: str
