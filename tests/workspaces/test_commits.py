"""Checkpoint commits of a session's tree, found by their key and restored exactly
(``workspaces/commits.py``), against real git in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path
from uuid import uuid4

import pytest

from industrial_orchestrator.workspaces.git_commands import WorkspaceError
from industrial_orchestrator.workspaces.worktrees import GitWorktrees

from .operator_git import files, git

pytestmark = pytest.mark.usefixtures("no_git_config")


async def test_commit_and_restore_round_trip_exactly(worktrees: GitWorktrees, repo: Path) -> None:
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    at_base = files(tree)

    (tree / "README.md").write_text("modified\n")
    (tree / "src" / "app.py").unlink()
    (tree / "docs").mkdir()
    (tree / "docs" / "guide.md").write_text("added\n")
    (tree / "link").symlink_to("docs/guide.md")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    checkpoint = await worktrees.commit(tree, "checkpoint 1")
    at_checkpoint = files(tree)

    # Everything after the checkpoint must go: edits, deletions, untracked and ignored files.
    (tree / "README.md").write_text("modified again\n")
    (tree / "docs" / "guide.md").unlink()
    (tree / "untracked.txt").write_text("u\n")
    (tree / "debug.log").write_text("ignored\n")
    (tree / "build" / "deep").mkdir(parents=True)
    (tree / "build" / "deep" / "out.bin").write_bytes(b"\x00\x01")
    nested = tree / "vendored"
    nested.mkdir()
    git(nested, "init", "-q")

    await worktrees.restore(tree, checkpoint)
    assert files(tree) == at_checkpoint
    assert os.access(tree / "run.sh", os.X_OK)
    assert git(tree, "status", "--porcelain", "--ignored") == ""

    await worktrees.restore(tree, binding.base_commit)
    assert files(tree) == at_base
    await worktrees.restore(tree, checkpoint[:12])
    assert files(tree) == at_checkpoint


async def test_commit_with_nothing_changed_still_records_a_checkpoint(
    worktrees: GitWorktrees,
) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    first = await worktrees.commit(binding.path, "nothing")
    second = await worktrees.commit(binding.path, "")
    assert len({binding.base_commit, first, second}) == 3
    assert git(binding.path, "rev-parse", "HEAD~2") == binding.base_commit
    assert git(binding.path, "rev-parse", "HEAD~1") == first


async def test_a_commit_names_the_commit_it_made_whatever_its_message_says(
    worktrees: GitWorktrees,
) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    decoy = "f" * 40
    (binding.path / "a.txt").write_text("a\n")
    made = await worktrees.commit(binding.path, f"[main {decoy}] looks like a summary")
    assert made == git(binding.path, "rev-parse", "HEAD") != decoy
    git(binding.path, "checkout", "-q", "--detach")
    detached = await worktrees.commit(binding.path, "on a detached head")
    assert detached == git(binding.path, "rev-parse", "HEAD") != made


async def test_a_commit_made_with_a_key_is_found_by_it_and_only_by_it(
    worktrees: GitWorktrees,
) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:1") is None
    keyed = await worktrees.commit(
        binding.path, "checkpoint: after task", keys=["checkpoint:s:after-task:1"]
    )
    longer = await worktrees.commit(binding.path, "another", keys=["checkpoint:s:after-task:10"])
    await worktrees.commit(binding.path, "no key; mentions checkpoint:s:after-task:1 inline")
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:1") == keyed
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:10") == longer
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task") is None
    assert git(binding.path, "log", "-1", "--format=%s", keyed) == "checkpoint: after task"
    both = await worktrees.commit(
        binding.path, "two at once", keys=["checkpoint:s:after-task:2", "checkpoint:s:after-task:3"]
    )
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:2") == both
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:3") == both
    with pytest.raises(WorkspaceError):
        await worktrees.commit(binding.path, "x", keys=["one", "two\nlines"])
