"""Which directories an operator may hand the orchestrator as a session's workspace.

A workspace is a path on the orchestrator's machine, given by whoever may create a
session; the orchestrator then checks it out, copies it or runs commands next to it.
So the path is confined to the configured workspace roots:

* it is absolute, at most ``MAX_WORKSPACE_CHARS`` long, with no control character
  (NUL included) and no lone surrogate;
* it has no ``..`` component at all. Collapsing ``a/..`` by hand is wrong as soon as
  ``a`` is a symlink, and this module cannot look, so it refuses instead of guessing;
* once ``.`` components, repeated and trailing slashes are dropped, it is one of the
  roots or lies inside one.

This is lexical: a symlink inside a root can still point out of it. The caller resolves
the returned path on disk and confines the result again before using it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath, PurePosixPath
from uuid import UUID

from .errors import InvalidInput
from .tasks.artifacts import shown_path

MAX_WORKSPACE_CHARS = 4096
BRANCH_PREFIX = "orchestrator/"


class InvalidWorkspace(InvalidInput):
    """A workspace path that is malformed or outside every configured workspace root."""

    code = "invalid_workspace"


def confine_workspace(path: str, roots: Sequence[Path]) -> PurePath:
    """``path`` normalised, or ``InvalidWorkspace`` saying why not and listing the roots.

    ``roots`` are absolute paths, already resolved by the caller; with none configured,
    no workspace is allowed. A root itself is an allowed workspace.
    """
    allowed = [_root(root) for root in roots]

    def refuse(reason: str) -> InvalidWorkspace:
        listed = ", ".join(repr(str(root)) for root in allowed) or "none are configured"
        return InvalidWorkspace(
            f"workspace {shown_path(path)!r} is refused: {reason}; allowed roots: {listed}",
            {
                "field": "workspace",
                "workspace": shown_path(path),
                "allowed_roots": [str(root) for root in allowed],
            },
        )

    if not path or path.isspace():
        raise refuse("it is empty")
    if len(path) > MAX_WORKSPACE_CHARS:
        raise refuse(f"it is {len(path)} characters long; the limit is {MAX_WORKSPACE_CHARS}")
    for position, ch in enumerate(path):
        if ch == "\x00":
            raise refuse(f"it contains a NUL character at position {position}")
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise refuse(f"it contains the control character {ch!r} at position {position}")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise refuse(f"it contains the lone surrogate {ch!r} at position {position}")
    if not path.startswith("/"):
        raise refuse("it is not absolute; give the full path from '/'")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise refuse("it has a '..' component; give the path without it")
    normalised = PurePosixPath("/", *parts)
    if not any(normalised.is_relative_to(root) for root in allowed):
        raise refuse("it is not inside an allowed workspace root")
    return normalised


def branch_name(session_id: UUID) -> str:
    """The git branch a session's work is committed to: ``orchestrator/<8 hex digits>``."""
    return f"{BRANCH_PREFIX}{session_id.hex[:8]}"


def _root(root: Path) -> PurePosixPath:
    pure = PurePosixPath(root)
    if not pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"workspace root {str(root)!r} must be absolute and resolved")
    # PurePosixPath keeps a leading '//' (POSIX leaves its meaning open); roots never need it.
    return PurePosixPath("/", *pure.parts[1:])
