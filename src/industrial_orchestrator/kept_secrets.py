"""Secrets made once and kept in files, so that a restart signs with the same key.

With ``SECRET_KEY`` unset, a key made anew at every start would void every agent's
token and every dashboard CSRF token at each restart (ARCHITECTURE.md §4: generated
once, kept under ``ORCHESTRATOR_HOME`` with mode 0600, reused at every start). The
container's first start (``cli/container.py``) keeps its generated secrets the same way.

A kept file is either absent or complete and private: the secret is written to a
temporary file created with ``O_EXCL`` and mode 0600 (never readable by others, not even
for an instant), then hard-linked to its name. ``link`` refuses an existing name, so of
two processes starting together exactly one key wins and the other reads it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

SECRET_KEY_FILE = "secret_key"
"""The file under ``ORCHESTRATOR_HOME`` that holds the key when ``SECRET_KEY`` is unset."""

MIN_SECRET_CHARS = 32


class KeptSecretError(Exception):
    """A kept secret exists but cannot be used as it is; the message says what to do."""


def new_secret() -> str:
    """64 URL-safe characters (48 random bytes)."""
    return secrets.token_urlsafe(48)


def kept_secret(path: Path, make: Callable[[], str] = new_secret) -> str:
    """The secret kept in ``path``; the first caller makes it with ``make`` and keeps it
    there (mode 0600), every later caller (and a concurrent one) reads that same one.

    Raises ``KeptSecretError`` when the file is not a private regular file of at least
    ``MIN_SECRET_CHARS`` characters, rather than quietly signing with something else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    secret = make()
    if len(secret) < MIN_SECRET_CHARS or secret != secret.strip():
        raise ValueError("a kept secret must be 32 characters or more, without spaces")
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secret + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: read its key
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, encoding="utf-8") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise KeptSecretError(f"{path} is not a regular file")
        if status.st_mode & 0o077:
            raise KeptSecretError(
                f"{path} can be read by other users (mode {stat.S_IMODE(status.st_mode):o}); "
                f"make it private: chmod 600 {path}"
            )
        secret = file.read().strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise KeptSecretError(
            f"{path} holds no usable secret (fewer than {MIN_SECRET_CHARS} characters); "
            "delete it to have a new one made"
        )
    return secret


def with_kept_secret_key(settings: Settings) -> Settings:
    """``settings`` signing with ``SECRET_KEY`` when it is set, else with the key kept in
    ``ORCHESTRATOR_HOME/secret_key`` (made on the first start)."""
    if "secret_key" in settings.model_fields_set:
        return settings
    from pydantic import SecretStr

    key = kept_secret(settings.orchestrator_home / SECRET_KEY_FILE)
    return settings.model_copy(update={"secret_key": SecretStr(key)})
