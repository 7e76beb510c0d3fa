"""What a session changed in its tree since a commit: the unified diff, the paths, and
whether anything did at all.

The diff and the paths stage the whole tree first (``git add -A`` into the tree's own index, as a
checkpoint would), so uncommitted and untracked work counts; ignored files do not.
"""

from __future__ import annotations

from pathlib import Path

from .git_commands import GitCommands, shown

DIFF_MAX_BYTES = 1 << 20


async def diff(git: GitCommands, path: Path, base: str, *, max_bytes: int = DIFF_MAX_BYTES) -> str:
    """Unified diff of the whole tree (uncommitted and untracked files too) against ``base``.

    Output past ``max_bytes`` is cut at a line boundary and ends with a line saying so.
    """
    tree = git.owned(path)
    async with git.lock(f"tree:{tree}"):
        sha = await git.commit_sha(tree, base)
        await git.run(tree, "add", "-A")
        output = await git.run(
            tree,
            "diff",
            "--cached",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            sha,
            "--",
            max_output=max_bytes,
        )
    if not output.truncated:
        return shown(output.stdout)
    kept = output.stdout[: output.stdout.rfind(b"\n") + 1]
    return shown(kept) + f"[diff cut: it is longer than {max_bytes} bytes; the rest is not shown]\n"


async def changed_files(git: GitCommands, path: Path, base: str) -> list[str]:
    """Paths added, modified or deleted since ``base``, untracked files included. A
    name that is not UTF-8 has U+FFFD for its bad bytes: for showing, not opening."""
    tree = git.owned(path)
    async with git.lock(f"tree:{tree}"):
        sha = await git.commit_sha(tree, base)
        await git.run(tree, "add", "-A")
        output = await git.run(
            tree, "diff", "--cached", "--name-only", "-z", "--no-renames", sha, "--"
        )
    return [shown(name) for name in output.stdout.split(b"\x00") if name]


async def changed_since(git: GitCommands, path: Path, commit: str) -> bool:
    """Whether the tree's HEAD is not ``commit`` or its files differ from HEAD (untracked
    ones too; ignored ones not). One ``git status``, which stages nothing: the cheap
    question a periodic checkpoint asks before it commits."""
    tree = git.owned(path)
    async with git.lock(f"tree:{tree}"):
        output = await git.run(
            tree, "status", "--porcelain=v2", "--branch", "--untracked-files=all", "-z"
        )
    head = ""
    for entry in output.stdout.split(b"\x00"):
        if entry.startswith(b"# branch.oid "):
            head = entry.removeprefix(b"# branch.oid ").decode("ascii", "replace")
        elif entry and not entry.startswith(b"# "):
            return True  # a changed, staged, unmerged or untracked path
    return head != commit
