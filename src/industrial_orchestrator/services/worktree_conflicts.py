"""Sessions on one repository that changed the same files.

Every session works in a tree of its own on a branch of its own, so nothing is merged
behind the operator's back; but two branches that change the same files will conflict
when they are merged. This says so beforehand, naming the sessions and the files.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..domain.errors import OrchestratorError
from ..domain.sessions.session import Session
from ..domain.sessions.states import SessionState
from ..domain.tasks.file_conflicts import overlap
from .ports import UnitOfWorkFactory, WorkingTrees

log = structlog.get_logger("industrial_orchestrator.services.worktree_conflicts")

# Sessions whose branch will not be merged: their changes conflict with nothing.
_DISCARDED = {SessionState.CANCELLED}
MAX_SESSIONS = 100


@dataclass(frozen=True, slots=True)
class SharedFiles:
    session: Session
    files: list[str]


@dataclass(frozen=True, slots=True)
class WorktreeConflicts:
    files: list[str]
    """What ``session`` changed."""
    conflicts: list[SharedFiles]
    """The other sessions on its workspace that changed some of the same files."""


async def changed(trees: WorkingTrees, session: Session) -> list[str] | None:
    """The files the session changed in its tree; None without a tree to look at."""
    if session.worktree is None:
        return None
    tree = Path(session.worktree.path)
    if not await asyncio.to_thread(tree.is_dir):
        return None
    try:
        return await trees.changed_files(tree, session.worktree.base_commit)
    except OrchestratorError as exc:
        log.warning("changed_files_unreadable", session_id=str(session.id), error=str(exc))
        return None


async def worktree_conflicts(
    uow: UnitOfWorkFactory, trees: WorkingTrees, session: Session
) -> WorktreeConflicts:
    mine = await changed(trees, session) or []
    if not mine or not session.workspace:
        return WorktreeConflicts(mine, [])
    async with uow.reader() as reader:
        others = await reader.sessions.on_workspace(session.workspace, limit=MAX_SESSIONS)
    found: list[SharedFiles] = []
    for other in others:
        if other.id == session.id or other.status in _DISCARDED:
            continue
        theirs = await changed(trees, other)
        shared = overlap(mine, theirs or [])
        if shared:
            found.append(SharedFiles(other, shared))
    return WorktreeConflicts(mine, found)
