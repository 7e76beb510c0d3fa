"""What the services need of the files: artifact writes and sessions' git working trees
(``workspaces/``), and the clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Protocol
from uuid import UUID


class ArtifactWriter(Protocol):
    """Puts artifacts into a workspace directory without ever leaving it."""

    def check(self, root: Path, relative: PurePosixPath) -> None:
        """Raise ``ArtifactPathRefused`` if what exists on disk would lead the write out."""

    def write(self, root: Path, relative: PurePosixPath, content: bytes) -> Path: ...

    def read(self, root: Path, relative: PurePosixPath) -> bytes | None:
        """The regular file there, or None (never following a link)."""


Clock = Callable[[], datetime]


class TreeBinding(Protocol):
    """A session's git working tree as the tree keeper made it."""

    @property
    def path(self) -> Path: ...

    @property
    def branch(self) -> str: ...

    @property
    def base_commit(self) -> str: ...

    @property
    def source(self) -> Path | None: ...


class WorkingTrees(Protocol):
    """Sessions' own git working trees (``workspaces.worktrees``)."""

    async def prepare(self, session_id: UUID, workspace: Path | None) -> TreeBinding: ...

    async def binding(self, session_id: UUID) -> TreeBinding | None:
        """The session's tree as recorded, without making one."""

    async def fork(
        self, path_from: Path, commit: str, session_id: UUID, source: Path | None
    ) -> TreeBinding: ...

    async def commit(self, path: Path, message: str, *, keys: Sequence[str] = ()) -> str:
        """Commit the whole tree; the sha. ``keys``: the effects it is, each found by
        ``find_commit``."""

    async def clean_head(self, path: Path) -> str | None:
        """HEAD's commit when a commit of the tree would add nothing to it; else None."""

    async def find_commit(self, path: Path, key: str) -> str | None:
        """The commit made with ``key`` on the tree's branch, if any."""

    async def changed_since(self, path: Path, commit: str) -> bool:
        """Whether the tree's files (untracked ones too) or its HEAD differ from
        ``commit``."""

    async def restore(self, path: Path, commit: str) -> None: ...

    async def diff(self, path: Path, base: str) -> str: ...

    async def changed_files(self, path: Path, base: str) -> list[str]: ...
