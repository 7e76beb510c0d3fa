"""Seeding a fresh repository with a copy of a directory that is not one.

The operator's directory is only read: symlinks are copied as links, never followed, and
what git cannot store is left out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from .git_commands import WorkspaceError


def copy_directory(source: Path, destination: Path, home: Path) -> None:
    """Copy ``source`` to ``destination`` (which must not exist) without following links.

    Left out: every ``.git`` entry, the orchestrator's home if it lies inside, and what
    git cannot store (sockets, FIFOs, devices; reading a FIFO would block forever).
    """

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped: set[str] = set()
        for name in names:
            full = os.path.join(directory, name)
            if name == ".git" or full == str(home):
                skipped.add(name)
                continue
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(full).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    skipped.add(name)
        return skipped

    try:
        shutil.copytree(source, destination, symlinks=True, ignore=ignore)
    except shutil.Error as exc:
        failures = [f"{src}: {why}" for src, _dst, why in exc.args[0][:5]]
        raise WorkspaceError(
            f"workspace {source} could not be copied: " + "; ".join(failures),
            {"workspace": str(source)},
        ) from exc
    except OSError as exc:
        raise WorkspaceError(
            f"workspace {source} could not be copied: {exc}", {"workspace": str(source)}
        ) from exc
