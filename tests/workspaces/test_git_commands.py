"""Git run the hardened way in our trees (``workspaces/git_commands.py``): no hooks, no
inherited ``GIT_*``, locks waited for or cleared, timeouts, errors that carry git's
message; against real git in a temporary directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from pathlib import Path
from uuid import uuid4

import pytest

from industrial_orchestrator.workspaces.git_commands import (
    AUTHOR_NAME,
    GitCommands,
    WorkspaceError,
)
from industrial_orchestrator.workspaces.worktrees import GitWorktrees

from .operator_git import files, git, operator_state

pytestmark = pytest.mark.usefixtures("no_git_config")


async def test_a_held_index_lock_is_waited_for(worktrees: GitWorktrees) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    lock = binding.path / ".git" / "index.lock"
    lock.write_bytes(b"")
    asyncio.get_running_loop().call_later(0.3, lock.unlink)
    (binding.path / "x.txt").write_text("x\n")
    sha = await worktrees.commit(binding.path, "after the lock")
    assert git(binding.path, "show", f"{sha}:x.txt") == "x"


async def test_an_index_lock_left_by_a_dead_git_is_cleared(tmp_path: Path) -> None:
    worktrees = GitWorktrees(tmp_path / "home", timeout=30)
    binding = await worktrees.prepare(uuid4(), None)
    lock = binding.path / ".git" / "index.lock"
    lock.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    (binding.path / "x.txt").write_text("x\n")
    sha = await worktrees.commit(binding.path, "past the stale lock")
    assert git(binding.path, "show", f"{sha}:x.txt") == "x"


async def test_cancelled_git_calls_never_leave_the_tree_locked(worktrees: GitWorktrees) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    for n in range(40):
        (binding.path / "f.txt").write_text(f"{n}\n")
        call = asyncio.ensure_future(worktrees.commit(binding.path, f"commit {n}"))
        await asyncio.sleep(n % 8 * 0.002)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    (binding.path / "f.txt").write_text("last\n")
    sha = await worktrees.commit(binding.path, "after all the cancelled ones")
    assert git(binding.path, "show", f"{sha}:f.txt") == "last"
    await worktrees.restore(binding.path, binding.base_commit)
    assert files(binding.path) == {}


async def test_a_cancelled_callers_turn_passes_on_only_when_its_git_has_ended(
    tmp_path: Path,
) -> None:
    # Else the next commit in the tree races the cancelled one on HEAD, and one fails.
    git_commands = GitCommands(tmp_path / "home")
    ended = tmp_path / "ended"

    async def slow_git() -> None:
        async with git_commands.lock("tree:t"):
            await git_commands.run(
                tmp_path, "-c", f"alias.slow=!sleep 0.5 && touch {ended}", "slow"
            )

    call = asyncio.ensure_future(slow_git())
    await asyncio.sleep(0.2)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    assert not ended.exists()
    async with git_commands.lock("tree:t"):
        assert ended.exists()


async def test_only_trees_of_this_orchestrator_are_touched(
    worktrees: GitWorktrees, repo: Path
) -> None:
    before = operator_state(repo)
    binding = await worktrees.prepare(uuid4(), repo)
    for path in (repo, binding.path / "src", binding.path.parent):
        with pytest.raises(WorkspaceError, match="is not a working tree of this orchestrator"):
            await worktrees.restore(path, binding.base_commit)
        with pytest.raises(WorkspaceError, match="is not a working tree of this orchestrator"):
            await worktrees.commit(path, "no")
    assert operator_state(repo) == before


async def test_a_tree_that_lost_its_git_never_reaches_an_enclosing_repository(
    tmp_path: Path,
) -> None:
    # The default home is ./.orchestrator, often inside the operator's own repository.
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q", "-b", "main")
    (outer / "tracked.txt").write_text("committed\n")
    git(outer, "add", "tracked.txt")
    git(outer, "commit", "-q", "-m", "operator's")
    (outer / "tracked.txt").write_text("an edit the operator has not committed\n")
    (outer / "precious.txt").write_text("untracked, must survive\n")
    worktrees = GitWorktrees(outer / ".orchestrator")
    binding = await worktrees.prepare(uuid4(), None)
    shutil.rmtree(binding.path / ".git")
    with pytest.raises(WorkspaceError):
        await worktrees.restore(binding.path, "HEAD")
    assert (outer / "precious.txt").read_text() == "untracked, must survive\n"
    assert (outer / "tracked.txt").read_text() == "an edit the operator has not committed\n"


async def test_git_errors_carry_gits_message(worktrees: GitWorktrees, repo: Path) -> None:
    git(repo, "branch", "orchestrator")  # refs/heads/orchestrator/<x> cannot exist beside it
    with pytest.raises(WorkspaceError) as raised:
        await worktrees.prepare(uuid4(), repo)
    assert "git worktree failed" in raised.value.message
    assert "refs/heads/orchestrator" in raised.value.message
    assert raised.value.details["stderr"]


async def test_hooks_and_inherited_git_variables_are_ignored(
    worktrees: GitWorktrees, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = repo / ".git" / "hooks"
    for hook in ("pre-commit", "post-checkout", "commit-msg"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {tmp_path}/{hook}-ran\nexit 1\n")
        (hooks / hook).chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    git(elsewhere, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Somebody Else")

    binding = await worktrees.prepare(uuid4(), repo)
    (binding.path / "x.txt").write_text("x\n")
    sha = await worktrees.commit(binding.path, "checkpoint")
    monkeypatch.delenv("GIT_DIR")
    assert git(repo, "log", "-1", "--format=%an", sha) == AUTHOR_NAME
    assert not [name for name in os.listdir(tmp_path) if name.endswith("-ran")]


async def test_a_git_call_that_outlives_its_timeout_is_killed(repo: Path, tmp_path: Path) -> None:
    worktrees = GitWorktrees(tmp_path / "home", timeout=1e-6)
    with pytest.raises(WorkspaceError, match="did not finish within"):
        await worktrees.prepare(uuid4(), repo)
