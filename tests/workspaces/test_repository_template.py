"""Fresh repositories made from the home's template (``workspaces/repository_template.py``):
configured as libgit2 configures one without it, the template made once per home, also
by processes that make it at the same moment."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import pygit2
import pytest

from industrial_orchestrator.workspaces.repository_template import (
    TEMPLATE_FOLDER,
    repository_template,
)
from industrial_orchestrator.workspaces.worktrees import GitWorktrees

from .operator_git import git

pytestmark = pytest.mark.usefixtures("no_git_config")


async def test_a_fresh_repository_is_configured_as_libgit2_configures_one(
    worktrees: GitWorktrees, tmp_path: Path
) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    plain = tmp_path / "home" / "plain"
    pygit2.init_repository(str(plain))

    def local_config(path: Path) -> str:
        return git(path, "config", "--list", "--local")

    assert local_config(binding.path) == local_config(plain)
    # libgit2's own template files are not made: nothing in them is used.
    for name in ("description", "hooks/README.sample", "info/exclude"):
        assert (plain / ".git" / name).exists()
        assert not (binding.path / ".git" / name).exists()
    assert git(binding.path, "rev-parse", "--abbrev-ref", "HEAD") == binding.branch
    assert git(binding.path, "status", "--porcelain") == ""
    git(binding.path, "fsck", "--strict")


async def test_the_template_is_made_once_per_home(worktrees: GitWorktrees, tmp_path: Path) -> None:
    await worktrees.prepare(uuid4(), None)
    config = tmp_path / "home" / TEMPLATE_FOLDER / "config"
    made = config.stat().st_ino
    await worktrees.prepare(uuid4(), None)
    other = GitWorktrees(tmp_path / "home")  # another process on the same home
    await other.prepare(uuid4(), None)
    assert config.stat().st_ino == made
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == [TEMPLATE_FOLDER, "worktrees"]


def test_processes_making_the_template_at_once_all_get_the_one_made(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda _: repository_template(home), range(8)))
    assert made == [home / TEMPLATE_FOLDER] * 8
    assert sorted(p.name for p in (home / TEMPLATE_FOLDER).iterdir()) == ["config"]
    assert sorted(p.name for p in home.iterdir()) == [TEMPLATE_FOLDER]  # no leftovers


async def test_a_template_removed_is_made_again(worktrees: GitWorktrees, tmp_path: Path) -> None:
    await worktrees.prepare(uuid4(), None)
    template = tmp_path / "home" / TEMPLATE_FOLDER
    (template / "config").unlink()
    template.rmdir()

    binding = await worktrees.prepare(uuid4(), None)

    assert (template / "config").is_file()
    assert not (binding.path / ".git" / "description").exists()
