"""A commit of what a tree's index holds, made by libgit2 (pygit2) in this process.

Why not ``git commit``: a checkpoint commit is the most frequent git call there is (each
finished task's), and ``git commit`` costs 3-4 ms of CPU in a small tree plus about 1 ms
to start it from the server, where writing the tree, the commit and the ref here costs
about 0.45 ms (measured on this project's 2-core machine). What goes into the index stays
``git add -A``'s own business (ignore rules, nested repositories, file modes): only the
commit is made here, as ``git commit --allow-empty --no-verify -m`` makes it. No hook
runs and nothing is signed, as the orchestrator's git is configured anyway.

``anything_to_add`` spares the ``git add -A`` of a tree nothing changed in (a task that
edited no file: a review, a passing test run), and ``clean_head`` the whole commit: the
checkpoint of such a tree names the commit it already is.

Blocking: call them from a worker thread (``GitCommands``).
"""

from __future__ import annotations

from pathlib import Path

import pygit2

_TRAILING_SPACE = " \t\r"


class RefMoved(Exception):
    """Someone else moved the branch (or holds its lock) while the commit was made."""


def commit_index(path: Path, message: str, *, name: str, email: str) -> str:
    """Commit the index of the repository (or linked worktree) at ``path`` onto its HEAD;
    the new commit's id. Raises ``RefMoved`` when the branch moved meanwhile or another
    git holds its lock (nothing is changed then: try again)."""
    repository = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
    tree = repository.index.write_tree()
    parents = [] if repository.head_is_unborn else [repository.head.target]
    author = pygit2.Signature(name, email)
    try:
        # libgit2 moves the branch only if its tip is still the first parent, under the
        # ref's lock, with a reflog entry, as git does.
        made = repository.create_commit("HEAD", author, author, cleaned(message), tree, parents)
    except (pygit2.GitError, OSError, ValueError) as exc:  # pygit2 raises all three
        if _moved(str(exc)):
            raise RefMoved(str(exc)) from exc
        raise
    return str(made)


def anything_to_add(path: Path) -> bool:
    """Whether ``git add -A`` could change the index of the tree at ``path``: anything
    staged, modified, deleted or new outside the ignore rules (libgit2's status, about
    0.15 ms in a small tree, where ``git add -A`` costs about 2 ms and a process). True
    when the status cannot be read: then git decides, as always."""
    try:
        repository = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        return bool(repository.status(untracked_files="normal"))
    except (pygit2.GitError, OSError, ValueError, KeyError):
        return True


def clean_head(path: Path) -> str | None:
    """HEAD's commit when a commit of the tree at ``path`` would hold exactly it: nothing
    staged, modified, deleted or new outside the ignore rules. None otherwise, and when
    HEAD is unborn or the status cannot be read (then a commit is made, as always)."""
    try:
        repository = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        if repository.head_is_unborn or repository.status(untracked_files="normal"):
            return None
        return str(repository.head.target)
    except (pygit2.GitError, OSError, ValueError, KeyError):
        return None


def cleaned(message: str) -> str:
    """The message as ``git commit -m`` stores it (its default ``whitespace`` cleanup):
    no trailing spaces, no blank lines at either end or twice in a row, one newline at
    the end (none at all for an empty message)."""
    kept: list[str] = []
    gap = False
    for line in message.split("\n"):
        line = line.rstrip(_TRAILING_SPACE)
        if not line:
            gap = bool(kept)
            continue
        if gap:
            kept.append("")
            gap = False
        kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def _moved(error: str) -> bool:
    lowered = error.lower()
    return "lock" in lowered or "modified" in lowered or "current tip" in lowered
