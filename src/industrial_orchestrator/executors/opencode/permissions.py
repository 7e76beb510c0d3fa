"""Permission requests of a turn: under the ``workspace`` policy a request for paths
(read, edit, list...) that all lie inside the task's working tree is allowed once, on
the operator's behalf; anything else (a shell command, a URL, a path outside, or every
request under ``ask``) waits for the operator (``/sessions/{id}/permissions``)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from ...domain.events import LogStream
from ...domain.webhooks import permission_needed_line
from .client import OpenCodeClient
from .turn import Turn

# Permissions whose patterns are paths: allowed inside the tree under the ``workspace``
# policy. Anything else (a shell command, a URL) is the operator's to allow.
PATH_PERMISSIONS = frozenset(
    {"read", "edit", "write", "list", "glob", "grep", "external_directory"}
)


async def answer_permission(
    client: OpenCodeClient, turn: Turn, props: dict[str, Any], permission_policy: str
) -> None:
    """Allow a ``permission.asked`` request, or say that it waits for the operator."""
    request_id = str(props.get("id"))
    if request_id in turn.asked:
        return
    turn.asked.add(request_id)
    what = f"{props.get('permission')} {', '.join(map(str, props.get('patterns') or []))}"
    if (
        permission_policy == "workspace"
        and props.get("permission") in PATH_PERMISSIONS
        and inside_tree(props.get("patterns") or [], Path(turn.directory))
    ):
        await client.reply_permission(request_id, turn.directory, "once")
        await turn.emit(LogStream.SYSTEM, f"permission allowed (inside the workspace): {what}")
        return
    await turn.emit(LogStream.SYSTEM, permission_needed_line(what, request_id))


def inside_tree(patterns: list[Any], root: Path) -> bool:
    """Every pattern names a path inside ``root`` (relative ones are taken from it)."""
    if not patterns:
        return False
    resolved_root = root.resolve()
    for pattern in patterns:
        text = str(pattern)
        if any(ch in text for ch in "*?[") and not text.endswith("/*"):
            return False
        path = PurePosixPath(text.removesuffix("/*"))
        full = path if path.is_absolute() else PurePosixPath(resolved_root) / path
        try:
            Path(full).resolve().relative_to(resolved_root)
        except ValueError:
            return False
    return True
