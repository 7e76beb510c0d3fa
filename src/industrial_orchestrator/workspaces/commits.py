"""Checkpoints of a session's tree: a commit of everything in it, found again by the key
of the effect it is, and the tree made exactly a recorded commit again.

A checkpoint commit carries the idempotency key of each effect it is as a trailer
(``Orchestrator-Effect: <key>``), so that after a crash between the commit and its
record, ``find_commit`` tells whether the commit was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .git_commands import GitCommands, WorkspaceError

EFFECT_TRAILER = "Orchestrator-Effect"


async def commit(git: GitCommands, path: Path, message: str, *, keys: Sequence[str] = ()) -> str:
    """Commit everything in the tree (untracked files too, even nothing); the new sha.

    ``keys`` (the idempotency keys of the effects this commit is) go into the message
    as trailers, one a line, for ``find_commit`` to recognise the commit after a crash
    by any of them."""
    tree = git.owned(path)
    if "\x00" in message or any("\x00" in key or "\n" in key for key in keys):
        raise WorkspaceError("a commit message cannot contain a NUL character")
    if keys:
        trailers = "\n".join(f"{EFFECT_TRAILER}: {key}" for key in keys)
        message = f"{message}\n\n{trailers}"
    async with git.lock(f"tree:{tree}"):
        # What goes in is git's own rule (``add -A``), asked only when the tree changed
        # since its index; the commit needs no process.
        if await git.anything_to_add(tree):
            await git.run(tree, "add", "-A")
        return await git.commit_index(tree, message)


async def clean_head(git: GitCommands, path: Path) -> str | None:
    """The commit a checkpoint of the tree would make when it would add nothing: HEAD's,
    if nothing is staged, changed or new in the tree; else None."""
    tree = git.owned(path)
    async with git.lock(f"tree:{tree}"):
        return await git.clean_head(tree)


async def find_commit(git: GitCommands, path: Path, key: str) -> str | None:
    """The commit on the tree's branch made with ``key``, if any."""
    tree = git.owned(path)
    async with git.lock(f"tree:{tree}"):
        output = await git.run(
            tree,
            "log",
            "-F",
            f"--grep={EFFECT_TRAILER}: {key}",
            "--format=%H%x00%B%x01",
            "HEAD",
            "--",
        )
    for entry in output.stdout.decode("utf-8", "replace").split("\x01"):
        sha, _, body = entry.strip().partition("\x00")
        # --grep matches a substring: a longer key that starts with ``key`` is not it.
        if sha and f"{EFFECT_TRAILER}: {key}" in body.splitlines():
            return sha
    return None


async def restore(git: GitCommands, path: Path, commit: str) -> None:
    """Make the tree exactly ``commit``: tracked files reset, everything else deleted."""
    tree = git.owned(path)
    async with git.lock(f"tree:{tree}"):
        sha = await git.commit_sha(tree, commit)
        await git.run(tree, "reset", "-q", "--hard", sha)
        # -ff: also nested repositories an agent may have cloned or initialised.
        await git.run(tree, "clean", "-q", "-ffdx")
