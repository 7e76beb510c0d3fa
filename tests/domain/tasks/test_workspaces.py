"""Where a task's and a session's work lands, case by case."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Session, WorktreeBinding
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.task import TaskType, new_task
from industrial_orchestrator.domain.tasks.workspaces import session_workspace, workspace_of

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOME = Path("/var/artifacts")
TREE = WorktreeBinding(path="/srv/trees/s1", branch="orchestrator/s1", base_commit="abc")


def _session(workspace, worktree):
    return Session(
        id=uuid4(),
        title="s",
        initial_prompt="p",
        priority=Priority.MEDIUM,
        status=SessionState.RUNNING,
        created_at=T0,
        updated_at=T0,
        workspace=workspace,
        worktree=worktree,
    )


def _task(session_id):
    task = new_task(
        id=uuid4(),
        title="t",
        description="",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["python"],
        estimated_effort=1,
        now=T0,
    )
    return task.evolve(session_id=session_id)


@pytest.mark.parametrize(
    ("workspace", "worktree", "where"),
    [
        ("/srv/repo", TREE, "/srv/trees/s1"),
        (None, TREE, "/srv/trees/s1"),
        ("/srv/repo", None, "/srv/repo"),
        (None, None, "home/session"),
        ("", None, "home/session"),
    ],
)
def test_a_sessions_work_lands_in_its_worktree_else_its_workspace_else_at_home(
    workspace, worktree, where
):
    session = _session(workspace, worktree)
    expected = HOME / str(session.id) if where == "home/session" else Path(where)
    assert session_workspace(session, HOME) == expected
    assert workspace_of(_task(session.id), session, HOME) == expected


def test_a_task_outside_sessions_works_in_a_directory_of_its_own():
    task = _task(None)
    assert workspace_of(task, None, HOME) == HOME / str(task.id)


def test_a_task_whose_session_is_not_at_hand_works_in_the_sessions_directory():
    session_id = uuid4()
    assert workspace_of(_task(session_id), None, HOME) == HOME / str(session_id)
