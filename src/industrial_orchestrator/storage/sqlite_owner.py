"""One serving process per SQLite file.

SQLite is the embedded, single-process mode (ARCHITECTURE.md §2.3): the process queues
its writers on an in-memory lock, and the running-slot count relies on that. A second
``orchestrator serve`` on the same file would break both, so serving takes an exclusive
lock on a file beside the database, released by the operating system when the process
ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyServed(Exception):
    """Another process is serving this SQLite database."""


def claim(database: Path) -> int:
    """Lock ``<database>.serve.lock`` for this process's lifetime; returns the descriptor."""
    descriptor = claim_file(database.with_name(database.name + ".serve.lock"))
    if descriptor is None:
        raise AlreadyServed(str(database))
    return descriptor


def claim_file(path: Path) -> int | None:
    """An exclusive lock on ``path`` (holding this process's id) until the descriptor
    returned is closed or the process ends; None when another holder has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    return descriptor
