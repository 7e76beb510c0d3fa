"""The disk half of a workspace check (the pure half is ``domain.workspace_roots``): the
path given, and the path it really leads to, both lie under a configured root, and it
is a directory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from ..domain.workspace_roots import InvalidWorkspace, confine_workspace


async def checked_workspace(given: str | None, roots: Sequence[Path], home: Path) -> str | None:
    """The workspace's real path, or ``InvalidWorkspace`` saying why it cannot be one."""
    if given is None:
        return None
    confined = confine_workspace(given, roots)
    real = await asyncio.to_thread(Path(confined).resolve)
    # A symlink inside a root must not lead out of every root.
    confine_workspace(str(real), roots)
    if not await asyncio.to_thread(real.is_dir):
        raise InvalidWorkspace(
            f"workspace {str(confined)!r} is not a directory on this machine; create it first",
            {"field": "workspace", "workspace": str(confined)},
        )
    own = await asyncio.to_thread(home.resolve)
    if real == own or real.is_relative_to(own):
        # Sessions' own trees live there: a workspace inside would copy them into itself.
        raise InvalidWorkspace(
            f"workspace {str(confined)!r} is inside the orchestrator's data directory "
            f"{own} (ORCHESTRATOR_HOME); use a directory outside it",
            {"field": "workspace", "workspace": str(confined)},
        )
    return str(real)
