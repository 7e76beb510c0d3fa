"""Snapshots of a task's attempt for the loop guard: never a ref, the index or HEAD moved.

``snapshot`` commits the files on no branch when a task's attempt starts,
``fingerprint`` gives a tree id after each of its steps, and ``roll_back`` puts back the
paths changed since the snapshot when the guard stops it. They stage through a scratch
index (``GIT_INDEX_FILE``), so the tree's index, ``HEAD`` and branch never move.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from .deleting import delete_paths
from .git_commands import GitCommands, WorkspaceError, shown

# Paths per `git checkout-index` call, well within the limit of a command line.
_PATHS_PER_CALL = 200


async def fingerprint(git: GitCommands, path: Path) -> str:
    """The id of the git tree the files make now (ignored files left out): the same
    id means the same files."""
    tree = git.owned(path)
    async with git.lock(f"tree:{tree}"):
        return await _files_tree(git, tree)


async def snapshot(git: GitCommands, path: Path, message: str) -> str:
    """A commit of the files as they are now, on no branch (its parent is ``HEAD``);
    ``roll_back`` returns to it. It lives as long as git keeps unreachable objects
    (two weeks by default), far longer than an attempt."""
    tree = git.owned(path)
    if "\x00" in message:
        raise WorkspaceError("a commit message cannot contain a NUL character")
    async with git.lock(f"tree:{tree}"):
        files = await _files_tree(git, tree)
        created = await git.run(tree, "commit-tree", files, "-p", "HEAD", "-m", message)
        return created.stdout.decode().strip()


async def roll_back(git: GitCommands, path: Path, snapshot: str) -> list[str]:
    """Put back the files that changed since ``snapshot``: changed or deleted ones
    restored, new ones deleted. Only those paths are touched, so a task running
    beside in the same tree keeps its files unless they changed too (which the
    file-conflict scheduling avoids). Ignored files are left as they are. Returns
    the paths put back, shown as ``changed_files`` shows them."""
    tree = git.owned(path)
    async with git.lock(f"tree:{tree}"):
        sha = await git.commit_sha(tree, snapshot)
        files = await _files_tree(git, tree)
        output = await git.run(
            tree, "diff-tree", "-r", "-z", "--no-renames", "--name-status", sha, files
        )
        fields = output.stdout.split(b"\x00")
        # The real names (undecodable bytes kept as surrogates, which ``os`` and the
        # git command line turn back into the same bytes) to act on; shown ones to return.
        changes = [
            (status.decode(), os.fsdecode(name), shown(name))
            for status, name in zip(fields[0::2], fields[1::2], strict=False)
            if name
        ]
        # New paths first: one may stand where a restored file's directory goes.
        await asyncio.to_thread(delete_paths, tree, [n for s, n, _ in changes if s == "A"])
        restored = [name for status, name, _ in changes if status != "A"]
        if restored:
            async with _scratch_index(git, tree, seeded=False) as index:
                await git.run(tree, "read-tree", sha, env=index)
                for start in range(0, len(restored), _PATHS_PER_CALL):
                    chunk = restored[start : start + _PATHS_PER_CALL]
                    await git.run(tree, "checkout-index", "-f", "-q", "--", *chunk, env=index)
    return sorted(shown_name for _, _, shown_name in changes)


async def _files_tree(git: GitCommands, tree: Path) -> str:
    """The tree id of the files on disk, staged through a scratch index."""
    async with _scratch_index(git, tree, seeded=True) as index:
        await git.run(tree, "add", "-A", env=index)
        return (await git.run(tree, "write-tree", env=index)).stdout.decode().strip()


@contextlib.asynccontextmanager
async def _scratch_index(
    git: GitCommands, tree: Path, *, seeded: bool
) -> AsyncIterator[dict[str, str]]:
    """The environment of a throw-away index for ``tree``, leaving the tree's own
    alone. ``seeded``: a copy of the tree's index, so that files unchanged since it
    was written are not read and hashed again."""
    await asyncio.to_thread(git.home.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=git.home) as scratch:
        index = Path(scratch) / "index"
        if seeded:
            found = await git.run(tree, "rev-parse", "--git-path", "index")
            own = tree / os.fsdecode(found.stdout.rstrip(b"\n"))
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(shutil.copyfile, own, index)
        yield {"GIT_INDEX_FILE": str(index)}
