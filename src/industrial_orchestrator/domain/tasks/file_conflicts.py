"""Which files tasks are expected to edit, and when two of them would collide.

A task's files come from its plan (``Task.files``) and from what its earlier attempts
touched (their artifacts' paths). Two tasks collide when one's path is the other's, or
lies under a directory the other names (``src/`` covers ``src/app.py``). Paths are
workspace-relative POSIX paths; they are normalised the way artifact paths are checked,
and a path that could not be an artifact's is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from ..errors import InvalidInput

MAX_FILES = 200


def normalised_path(path: str) -> str:
    """``path`` as compared: no ``./`` steps, a directory keeping its trailing ``/``."""
    directory = path.endswith("/")
    parts = [part for part in PurePosixPath(path.strip()).parts if part != "."]
    if not parts or path.startswith("/") or ".." in parts or "\\" in path or "\0" in path:
        raise InvalidInput(
            f"{path!r} is not a path inside the workspace (relative, no '..')",
            {"field": "files", "path": path},
        )
    joined = "/".join(parts)
    return joined + "/" if directory else joined


def planned_files(paths: Iterable[str]) -> tuple[str, ...]:
    """The paths of a plan, normalised, once each, sorted; at most ``MAX_FILES``."""
    files = sorted({normalised_path(path) for path in paths})
    if len(files) > MAX_FILES:
        raise InvalidInput(
            f"a task names {len(files)} files; the limit is {MAX_FILES} (name directories)",
            {"field": "files", "limit": MAX_FILES},
        )
    return tuple(files)


def _covers(a: str, b: str) -> bool:
    return a == b or (a.endswith("/") and b.startswith(a))


def overlap(ours: Iterable[str], theirs: Iterable[str]) -> list[str]:
    """The paths of ``ours`` that collide with one of ``theirs``, sorted."""
    mine, other = set(ours), set(theirs)
    return sorted(p for p in mine if any(_covers(p, q) or _covers(q, p) for q in other))
