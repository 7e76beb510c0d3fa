"""Deleting a working tree, or some of its paths, whatever an agent did to them.

An agent may make directories unreadable or read-only, or replace a directory by a
link; nothing here follows a link out of the tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
from pathlib import Path


async def delete_tree(tree: Path) -> None:
    """``rmtree`` in a worker thread."""
    await asyncio.to_thread(rmtree, tree)


def rmtree(tree: Path) -> None:
    """Delete ``tree`` even where an agent made directories unreadable or read-only."""
    if not os.path.lexists(tree):
        return
    if tree.is_symlink() or not tree.is_dir():
        tree.unlink()
        return
    try:
        shutil.rmtree(tree)
    except PermissionError:
        # Top-down, each directory is opened up before it is listed; links are not followed.
        os.chmod(tree, stat.S_IRWXU)
        for directory, names, _files in os.walk(tree):
            for name in names:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(tree)


def delete_paths(tree: Path, names: list[str]) -> None:
    """Delete these paths of ``tree`` (files, links, or directories such as a nested
    repository), then the directories they leave empty; never through a link."""
    for name in names:
        full = tree / name
        if not full.parent.resolve().is_relative_to(tree):
            continue  # a directory on the way was replaced by a link: not ours to follow
        if full.is_dir() and not full.is_symlink():
            rmtree(full)
        else:
            with contextlib.suppress(FileNotFoundError):
                full.unlink()
        parent = full.parent
        while parent != tree:
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): the rest of the way up stays
                break
            parent = parent.parent
