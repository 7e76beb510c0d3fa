"""Where a session works, and the record of it on disk.

A binding is recorded in ``<home>/worktrees/<session id>.json`` before ``prepare``
returns, so a second call (after a restart too) finds it. A record that is not
``complete`` is what an interrupted ``prepare`` left: the branch it names is the
session's, but the tree may be half made.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a session works: its tree, the branch it commits to, where that started."""

    path: Path
    branch: str
    base_commit: str
    source: Path | None


@dataclass(frozen=True, slots=True)
class Record:
    """A binding as written to disk; not ``complete`` until its tree is made."""

    binding: Binding
    complete: bool


def read_record(path: Path) -> Record | None:
    """The record at ``path``, None when there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    source = data["source"]
    return Record(
        Binding(
            path=Path(data["path"]),
            branch=data["branch"],
            base_commit=data["base_commit"],
            source=None if source is None else Path(source),
        ),
        complete=bool(data["complete"]),
    )


def write_record(path: Path, record: Record) -> None:
    """Write the record atomically and durably: a reader sees the old one or the new one."""
    binding = record.binding
    data = {
        "path": str(binding.path),
        "branch": binding.branch,
        "base_commit": binding.base_commit,
        "source": None if binding.source is None else str(binding.source),
        "complete": record.complete,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(data, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
