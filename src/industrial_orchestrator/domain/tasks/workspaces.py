"""Where a task's work lands: the directory its agent works in and its artifacts are
written to.

A task of a session works in the session's workspace (its worktree once it has one);
a session without one, and a task outside sessions, gets a directory of its own under
the orchestrator's artifacts home, so two of them never write into one another's.
"""

from __future__ import annotations

from pathlib import Path

from ..sessions.session import Session
from .task import Task


def workspace_of(task: Task, session: Session | None, artifacts_home: Path) -> Path:
    """Where a task's work lands: its session's workspace, else a directory of the
    session's (or, outside sessions, the task's) own under ``artifacts_home``."""
    if session is not None and session.worktree is not None:
        return Path(session.worktree.path)
    if session is not None and session.workspace:
        return Path(session.workspace)
    return artifacts_home / str(task.session_id or task.id)


def session_workspace(session: Session, artifacts_home: Path) -> Path:
    """Where a session's work lands: its worktree, its workspace, else a directory of
    its own under ``artifacts_home``."""
    if session.worktree is not None:
        return Path(session.worktree.path)
    return Path(session.workspace) if session.workspace else artifacts_home / str(session.id)
