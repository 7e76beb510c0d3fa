"""The loop guard's snapshots of a session's tree: fingerprints, a snapshot commit on no
branch, and a roll-back of only the paths changed since, against real git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from uuid import uuid4

import pytest

from industrial_orchestrator.workspaces.git_commands import WorkspaceError
from industrial_orchestrator.workspaces.worktrees import GitWorktrees


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Operator", "-c", "user.email=op@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    )
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The operator's repository: two tracked files, one in a directory, and an ignore rule."""
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("hello\n")
    (repo / "src" / "app.py").write_text("VALUE = 1\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    return repo


@pytest.fixture
async def tree(tmp_path: Path, repo: Path) -> tuple[GitWorktrees, Path]:
    trees = GitWorktrees(tmp_path / "home")
    binding = await trees.prepare(uuid4(), repo)
    return trees, binding.path


def _state(path: Path) -> tuple[str, str, str]:
    """What must never move: HEAD, the branch, and the index."""
    return (
        git(path, "rev-parse", "HEAD"),
        git(path, "symbolic-ref", "HEAD"),
        git(path, "ls-files", "--stage"),
    )


async def test_the_fingerprint_changes_with_the_files_and_comes_back_with_them(
    tree: tuple[GitWorktrees, Path],
) -> None:
    trees, path = tree
    before = await trees.fingerprint(path)
    assert await trees.fingerprint(path) == before
    (path / "README.md").write_text("changed\n")
    changed = await trees.fingerprint(path)
    assert changed != before
    (path / "README.md").write_text("hello\n")
    assert await trees.fingerprint(path) == before
    (path / "debug.log").write_text("ignored\n")
    assert await trees.fingerprint(path) == before, "ignored files are no progress"


async def test_a_roll_back_puts_back_what_changed_since_the_snapshot_and_nothing_else(
    tree: tuple[GitWorktrees, Path],
) -> None:
    trees, path = tree
    (path / "notes.txt").write_text("untracked before the attempt\n")
    moved = _state(path)
    snapshot = await trees.snapshot(path, "Loop guard: attempt 1 starts")
    assert _state(path) == moved, "a snapshot moves no branch, HEAD or index"
    assert git(path, "branch", "--contains", snapshot) == "", "the snapshot is on no branch"

    # The looping agent's work: an edit, a deletion, new files in a new directory, a file
    # where a directory was, and an ignored file.
    (path / "README.md").write_text("looped\n")
    (path / "notes.txt").unlink()
    (path / "new" / "deep").mkdir(parents=True)
    (path / "new" / "deep" / "scratch.txt").write_text("x\n")
    (path / "src" / "app.py").unlink()
    (path / "src").rmdir()
    (path / "src").write_text("a file now\n")
    (path / "debug.log").write_text("ignored\n")
    # Meanwhile, a checkpoint of the session commits on the branch: HEAD moves.
    head = await trees.commit(path, "checkpoint while the agent loops")

    rolled_back = await trees.roll_back(path, snapshot)

    assert rolled_back == sorted(
        ["README.md", "notes.txt", "new/deep/scratch.txt", "src", "src/app.py"]
    )
    assert (path / "README.md").read_text() == "hello\n"
    assert (path / "notes.txt").read_text() == "untracked before the attempt\n"
    assert (path / "src" / "app.py").read_text() == "VALUE = 1\n"
    assert not (path / "new").exists(), "new files go, and the directories they leave empty"
    assert (path / "debug.log").exists(), "ignored files are left alone"
    assert git(path, "rev-parse", "HEAD") == head, "HEAD is never reset"
    assert await trees.fingerprint(path) == git(path, "rev-parse", f"{snapshot}^{{tree}}")


async def test_a_roll_back_with_nothing_changed_touches_nothing(
    tree: tuple[GitWorktrees, Path],
) -> None:
    trees, path = tree
    snapshot = await trees.snapshot(path, "start")
    assert await trees.roll_back(path, snapshot) == []
    assert (path / "README.md").read_text() == "hello\n"


async def test_a_task_beside_it_keeps_the_files_it_changed_before_the_snapshot(
    tree: tuple[GitWorktrees, Path],
) -> None:
    trees, path = tree
    (path / "other-task.txt").write_text("the other task's work\n")
    snapshot = await trees.snapshot(path, "start")
    (path / "README.md").write_text("looped\n")
    assert await trees.roll_back(path, snapshot) == ["README.md"]
    assert (path / "other-task.txt").read_text() == "the other task's work\n"


async def test_a_directory_that_is_not_one_of_its_trees_is_refused(
    tree: tuple[GitWorktrees, Path], repo: Path
) -> None:
    trees, _ = tree
    for call in (trees.fingerprint(repo), trees.snapshot(repo, "x")):
        with pytest.raises(WorkspaceError):
            await call
    with pytest.raises(WorkspaceError):
        await trees.roll_back(repo, "HEAD")
