"""Checkpoint commits made by libgit2 (``workspaces/index_commits.py``): the commit
``git commit`` would make from the same index, in a session's linked worktree, and
another git's lock on the branch waited out, against real git."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from industrial_orchestrator.workspaces.git_commands import (
    AUTHOR_EMAIL,
    AUTHOR_NAME,
    GitCommands,
    WorkspaceError,
)
from industrial_orchestrator.workspaces.index_commits import RefMoved, cleaned, commit_index
from industrial_orchestrator.workspaces.worktrees import GitWorktrees

from .operator_git import git

pytestmark = pytest.mark.usefixtures("no_git_config")


def _commit_of(cwd: Path, commit: str) -> tuple[dict[str, str], str]:
    """A commit's headers (author and committer without their dates) and its message,
    exactly (read as bytes: no newline translation)."""
    raw = subprocess.run(
        ["git", "-C", str(cwd), "cat-file", "commit", commit], capture_output=True, check=True
    ).stdout.decode()
    headers, _, message = raw.partition("\n\n")
    fields: dict[str, str] = {}
    for line in headers.splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value.rsplit(" ", 2)[0] if key in ("author", "committer") else value
    return fields, message


async def test_the_commit_is_the_one_git_commit_makes_from_the_same_index(
    worktrees: GitWorktrees, repo: Path
) -> None:
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    (tree / "README.md").write_text("changed\n")
    (tree / "new.txt").write_text("new\n")
    (tree / "src" / "app.py").unlink()
    git(tree, "add", "-A")
    staged = git(tree, "write-tree")
    before = git(tree, "rev-parse", "HEAD")
    branch = git(tree, "symbolic-ref", "HEAD")
    message = "checkpoint: after task  \n\n\nOrchestrator-Effect: k1\n"

    made = commit_index(tree, message, name=AUTHOR_NAME, email=AUTHOR_EMAIL)

    assert git(tree, "rev-parse", "HEAD") == git(tree, "rev-parse", branch) == made
    headers, stored = _commit_of(tree, made)
    assert headers["tree"] == staged
    assert headers["parent"] == before
    assert headers["author"] == headers["committer"] == f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"
    assert stored == "checkpoint: after task\n\nOrchestrator-Effect: k1\n"
    assert git(tree, "status", "--porcelain") == ""  # the index is the commit's tree
    assert git(tree, "reflog", "-1", "--format=%H") == made
    git(tree, "fsck", "--no-progress")
    # The operator's own checkout did not move.
    assert git(repo, "rev-parse", "HEAD") != made


async def test_a_first_commit_has_no_parent(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "main")
    (fresh / "a.txt").write_text("a\n")
    git(fresh, "add", "-A")
    made = commit_index(fresh, "first", name=AUTHOR_NAME, email=AUTHOR_EMAIL)
    headers, _ = _commit_of(fresh, made)
    assert "parent" not in headers
    assert git(fresh, "rev-parse", "main") == made


@given(
    st.text(alphabet=st.sampled_from(["a", "b", " ", "\t", "\r", "\n", "é", "#", "-"]), max_size=40)
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_message_is_stored_as_git_commit_m_stores_it(tmp_path: Path, message: str) -> None:
    scratch = tmp_path / "scratch"
    if not scratch.exists():
        scratch.mkdir()
        git(scratch, "init", "-q", "-b", "main")
    git(scratch, "commit", "-q", "--allow-empty", "--allow-empty-message", "-m", message)
    _, stored = _commit_of(scratch, "HEAD")
    assert cleaned(message) == stored


async def test_a_lock_another_git_holds_on_the_branch_is_waited_out(
    worktrees: GitWorktrees, repo: Path
) -> None:
    """Another git (an agent's, another replica's) holds the branch's lock: nothing is
    changed, and the commit is made once the lock is gone."""
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    common = Path(git(tree, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    lock = common / f"{git(tree, 'symbolic-ref', 'HEAD')}.lock"
    before = git(tree, "rev-parse", "HEAD")
    lock.write_text("")
    with pytest.raises(RefMoved):
        commit_index(tree, "held", name=AUTHOR_NAME, email=AUTHOR_EMAIL)
    assert git(tree, "rev-parse", "HEAD") == before

    commits = GitCommands(worktrees._git.home)
    made = asyncio.create_task(commits.commit_index(tree, "waited"))
    await asyncio.sleep(0.3)
    assert not made.done()
    lock.unlink()
    sha = await asyncio.wait_for(made, timeout=30)
    assert git(tree, "rev-parse", "HEAD") == sha
    assert git(tree, "rev-parse", "HEAD~1") == before


async def test_a_tree_that_is_no_repository_is_a_workspace_error(tmp_path: Path) -> None:
    plain = tmp_path / "home" / "worktrees" / "plain"
    plain.mkdir(parents=True)
    with pytest.raises(WorkspaceError):
        await GitCommands(tmp_path / "home").commit_index(plain, "nothing here")
