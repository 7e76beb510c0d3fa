"""What the workspace tests share: a home for the trees, an operator's repository, and
no git configuration of the user's."""

from __future__ import annotations

from pathlib import Path

import pytest

from industrial_orchestrator.workspaces.worktrees import GitWorktrees

from .operator_git import git


@pytest.fixture
def no_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ~/.gitconfig: the orchestrator must not need one."""
    empty_home = tmp_path / "user-home"
    empty_home.mkdir()
    monkeypatch.setenv("HOME", str(empty_home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@pytest.fixture
def worktrees(tmp_path: Path) -> GitWorktrees:
    return GitWorktrees(tmp_path / "home")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An operator's repository: two commits, a local change and an untracked file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("print('v1')\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "src" / "app.py").write_text("print('v2')\n")
    git(repo, "commit", "-q", "-am", "second")
    (repo / "README.md").write_text("hello, uncommitted\n")
    (repo / "notes.txt").write_text("the operator's own untracked file\n")
    return repo
