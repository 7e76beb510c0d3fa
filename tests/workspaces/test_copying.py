"""A directory that is not a repository seeds a fresh one as a copy, and is only read
(``workspaces/copying.py``), against real git in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path
from uuid import uuid4

import pytest

from industrial_orchestrator.workspaces.worktrees import GitWorktrees

from .operator_git import files, git

pytestmark = pytest.mark.usefixtures("no_git_config")


async def test_a_directory_that_is_not_a_repository_is_copied_not_modified(
    worktrees: GitWorktrees, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    (plain / "src").mkdir(parents=True)
    (plain / "src" / "main.py").write_text("print('hi')\n")
    (plain / "data.bin").write_bytes(bytes(range(256)))
    (plain / "outside-link").symlink_to(tmp_path / "secret")
    (plain / "vendor" / ".git").mkdir(parents=True)
    (plain / "vendor" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (plain / "vendor" / "lib.py").write_text("lib\n")
    os.mkfifo(plain / "pipe")
    before = files(plain)
    mtimes = {p: os.lstat(plain / p).st_mtime_ns for p in before}

    session_id = uuid4()
    binding = await worktrees.prepare(session_id, plain)
    assert binding.source is None
    copied = files(binding.path)
    assert copied == {k: v for k, v in before.items() if not k.startswith("vendor/.git")}
    assert os.readlink(binding.path / "outside-link") == str(tmp_path / "secret")
    assert not (binding.path / "pipe").exists()
    assert git(binding.path, "status", "--porcelain") == ""
    assert git(binding.path, "rev-list", "--count", "HEAD") == "1"
    assert "vendor/lib.py" in git(binding.path, "ls-files")

    (binding.path / "src" / "main.py").write_text("changed\n")
    await worktrees.commit(binding.path, "work")
    await worktrees.remove(session_id)
    assert not binding.path.exists()
    assert files(plain) == before
    assert {p: os.lstat(plain / p).st_mtime_ns for p in before} == mtimes
    assert not (plain / ".git").exists()
