"""Git as the operator runs it, and what the workspace tests look at in a directory."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

OPERATOR = ["-c", "user.name=Operator", "-c", "user.email=operator@example.com"]


def git(cwd: Path, *args: str) -> str:
    """Git as the operator runs it, with an identity of their own."""
    result = subprocess.run(
        ["git", *OPERATOR, "-C", str(cwd), *args],
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    )
    return result.stdout.strip()


def git_fails(cwd: Path, *args: str) -> bool:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True).returncode != 0


def files(root: Path) -> dict[str, bytes | str]:
    """Everything under ``root`` but ``.git``: file contents, and link targets as strings."""
    found: dict[str, bytes | str] = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            path = os.path.join(directory, name)
            key = os.path.relpath(path, root)
            if name == ".git" or stat.S_ISFIFO(os.lstat(path).st_mode):
                continue
            found[key] = os.readlink(path) if os.path.islink(path) else Path(path).read_bytes()
    return found


def operator_state(repo: Path) -> tuple[str, str, str, dict[str, bytes | str]]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        files(repo),
    )
