"""What a session changed in its tree: the diff and the paths (``workspaces/diffs.py``),
against real git in a temporary directory."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from industrial_orchestrator.workspaces.worktrees import GitWorktrees

from .operator_git import git

pytestmark = pytest.mark.usefixtures("no_git_config")


async def test_diff_and_changed_files_include_untracked_and_uncommitted_work(
    worktrees: GitWorktrees, repo: Path
) -> None:
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    (tree / "committed.txt").write_text("committed\n")
    await worktrees.commit(tree, "c")
    (tree / "README.md").write_text("edited, not committed\n")
    (tree / "src" / "app.py").unlink()
    (tree / "brand new.py").write_text("untracked = True\n")
    (tree / "ignored.log").write_text("ignored\n")

    changed = await worktrees.changed_files(tree, binding.base_commit)
    assert changed == ["README.md", "brand new.py", "committed.txt", "src/app.py"]
    diff = await worktrees.diff(tree, binding.base_commit)
    assert "+untracked = True" in diff
    assert "+committed" in diff
    assert "-hello" in diff
    assert "+edited, not committed" in diff
    assert "deleted file mode" in diff
    assert "ignored" not in diff
    assert await worktrees.diff(tree, git(tree, "rev-parse", "HEAD")) != ""
    await worktrees.commit(tree, "all")
    assert await worktrees.diff(tree, "HEAD") == ""
    assert await worktrees.changed_files(tree, "HEAD") == []


async def test_a_large_diff_is_cut_with_a_marker(worktrees: GitWorktrees) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    (binding.path / "big.txt").write_text("".join(f"line {i}\n" for i in range(200_000)))
    cut = await worktrees.diff(binding.path, binding.base_commit, max_bytes=10_000)
    body, marker = cut[: cut.rindex("[diff cut")], cut[cut.rindex("[diff cut") :]
    assert len(body.encode()) <= 10_000
    assert body.endswith("\n")
    assert marker == "[diff cut: it is longer than 10000 bytes; the rest is not shown]\n"
    whole = await worktrees.diff(binding.path, binding.base_commit, max_bytes=10**8)
    assert "[diff cut" not in whole
    assert whole.startswith(body)
    assert "+line 199999\n" in whole
    # The default cap is 1 MiB.
    default = await worktrees.diff(binding.path, binding.base_commit)
    assert len(default.encode()) < (1 << 20) + 200
    assert "[diff cut" in default


async def test_a_tree_has_changed_since_a_commit_when_its_files_or_its_head_moved_on(
    worktrees: GitWorktrees, repo: Path
) -> None:
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    at = await worktrees.commit(tree, "checkpoint")
    assert not await worktrees.changed_since(tree, at)
    (tree / "ignored.log").write_text("ignored\n")  # .gitignore'd: not the session's work
    assert not await worktrees.changed_since(tree, at)
    (tree / "new dir").mkdir()
    (tree / "new dir" / "untracked.py").write_text("x = 1\n")
    assert await worktrees.changed_since(tree, at)
    (tree / "new dir" / "untracked.py").unlink()
    assert not await worktrees.changed_since(tree, at)
    (tree / "README.md").write_text("edited\n")
    assert await worktrees.changed_since(tree, at)
    later = await worktrees.commit(tree, "next")
    # Clean again, but not at that commit any more.
    assert await worktrees.changed_since(tree, at)
    assert not await worktrees.changed_since(tree, later)
