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


def _staged(tree: Path) -> tuple[str, str]:
    return git(tree, "ls-files", "--stage"), git(tree, "write-tree")


_CHANGES = {
    "nothing": lambda t: None,
    "a file edited": lambda t: (t / "README.md").write_text("changed\n"),
    "a file added": lambda t: (t / "new.txt").write_text("new\n"),
    "a file in a new folder": lambda t: (
        (t / "deep" / "er").mkdir(parents=True),
        (t / "deep" / "er" / "f.txt").write_text("f\n"),
    ),
    "a file deleted": lambda t: (t / "src" / "app.py").unlink(),
    "a file made executable": lambda t: (t / "README.md").chmod(0o755),
    "a symlink added": lambda t: (t / "link").symlink_to("README.md"),
    "an ignored file added": lambda t: (t / "debug.log").write_text("ignored\n"),
    "an empty folder added": lambda t: (t / "empty").mkdir(),
    "a file replaced by a folder": lambda t: (
        (t / "README.md").unlink(),
        (t / "README.md").mkdir(),
        (t / "README.md" / "inside.txt").write_text("i\n"),
    ),
    "a change staged by someone": lambda t: (
        (t / "staged.txt").write_text("s\n"),
        git(t, "add", "staged.txt"),
    ),
    "a nested repository": lambda t: (
        (t / "vendored").mkdir(),
        git(t / "vendored", "init", "-q"),
        (t / "vendored" / "v.txt").write_text("v\n"),
        git(t / "vendored", "add", "-A"),
        git(t / "vendored", "commit", "-q", "-m", "v"),
    ),
}


@pytest.mark.parametrize("change", list(_CHANGES))
async def test_nothing_to_add_means_git_add_would_change_nothing(
    worktrees: GitWorktrees, repo: Path, change: str
) -> None:
    """A checkpoint skips ``git add -A`` only when it could change nothing: the index
    and its tree are what they would be after it, so the commit is the same."""
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    _CHANGES[change](tree)
    head_tree = git(tree, "rev-parse", "HEAD^{tree}")
    claimed = await GitCommands(worktrees._git.home).anything_to_add(tree)
    before = _staged(tree)
    git(tree, "add", "-A")
    after = _staged(tree)
    if before != after or after[1] != head_tree:
        assert claimed, f"{change}: git add -A changes the index, but nothing was to add"
    if change in ("nothing", "an ignored file added", "an empty folder added"):
        assert not claimed, f"{change}: nothing to add, yet git add -A would be run"


@pytest.mark.parametrize("change", list(_CHANGES))
async def test_a_clean_head_is_named_only_when_a_commit_would_hold_just_it(
    worktrees: GitWorktrees, repo: Path, change: str
) -> None:
    """A checkpoint that names HEAD instead of committing (``clean_head``) loses nothing:
    HEAD is named only when ``git add -A`` and a commit would give HEAD's own tree."""
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    _CHANGES[change](tree)
    head = git(tree, "rev-parse", "HEAD")
    named = await worktrees.clean_head(tree)
    git(tree, "add", "-A")
    same_tree = git(tree, "write-tree") == git(tree, "rev-parse", "HEAD^{tree}")
    assert named in (None, head)
    if not same_tree:
        assert named is None, f"{change}: a commit would hold more than HEAD"
    if change in ("nothing", "an ignored file added", "an empty folder added"):
        assert named == head, f"{change}: nothing to commit, yet HEAD was not named"


async def test_no_clean_head_without_a_first_commit_or_a_repository(tmp_path: Path) -> None:
    unborn = tmp_path / "home" / "worktrees" / "unborn"
    unborn.mkdir(parents=True)
    git(unborn, "init", "-q")
    plain = tmp_path / "home" / "worktrees" / "plain"
    plain.mkdir()
    commands = GitCommands(tmp_path / "home")
    assert await commands.clean_head(unborn) is None
    assert await commands.clean_head(plain) is None
