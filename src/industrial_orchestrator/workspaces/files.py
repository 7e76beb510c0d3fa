"""Writing artifacts into a task's workspace without ever leaving it.

The path was validated in the domain (``validate_artifact_path``), but the disk can still
lie: a component may be a symlink planted by an earlier artifact, by a tool run in the
workspace, or swapped in between a check and a write. So nothing here resolves a path
string. Each directory is opened relative to its parent's file descriptor with
``O_NOFOLLOW``, and the file is written under a temporary name in the final directory and
renamed over the destination (``rename`` replaces a symlink, it never follows it).

``check_confined`` answers early (422 before anything is committed); ``write_confined``
is the part that must be right even if the workspace changes in between.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path, PurePosixPath

from ..domain.errors import ArtifactPathRefused
from ..domain.tasks.artifacts import shown_path, validate_artifact_path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_ATTEMPTS = 5


def check_confined(root: Path, relative: PurePosixPath) -> None:
    """Refuse ``relative`` if what already exists under ``root`` would lead the write out.

    An intermediate component must be a real directory (not a symlink); the final one, if
    it exists, must not be a symlink or a directory. Components that do not exist yet are
    fine: ``write_confined`` creates them.
    """
    parts = validate_artifact_path(str(relative)).parts
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        for index, name in enumerate(parts[:-1]):
            try:
                mode = os.lstat(name, dir_fd=fd).st_mode
            except FileNotFoundError:
                return
            if stat.S_ISLNK(mode):
                raise _refused(
                    relative, parts[: index + 1], "escapes the workspace through a symlink"
                )
            if not stat.S_ISDIR(mode):
                raise _refused(relative, parts[: index + 1], "is not a directory")
            child = _open_dir(fd, relative, parts[: index + 1])
            os.close(fd)
            fd = child
        try:
            mode = os.lstat(parts[-1], dir_fd=fd).st_mode
        except FileNotFoundError:
            return
        _check_destination(mode, relative)
    finally:
        os.close(fd)


def write_confined(root: Path, relative: PurePosixPath, content: bytes) -> Path:
    """Write ``content`` at ``root / relative``, creating directories, never leaving ``root``.

    The write is atomic (temporary file, fsync, rename): a reader sees the old file or
    the new one. Raises ``ArtifactPathRefused`` when a component on the way is a symlink
    or not a directory, or the destination is a symlink or a directory.
    """
    parts = validate_artifact_path(str(relative)).parts
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, name in enumerate(parts[:-1]):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=fd)
            child = _open_dir(fd, relative, parts[: index + 1])
            os.close(fd)
            fd = child
        name = parts[-1]
        try:
            mode = os.lstat(name, dir_fd=fd).st_mode
        except FileNotFoundError:
            pass
        else:
            _check_destination(mode, relative)
        temp = _write_temp(fd, content)
        try:
            os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=fd)
            if isinstance(exc, IsADirectoryError):
                raise _refused(relative, parts, "is a directory") from exc
            raise
        # The rename is durable only once the directory holding it is on disk.
        os.fsync(fd)
    finally:
        os.close(fd)
    return root / relative


def read_confined(root: Path, relative: PurePosixPath) -> bytes | None:
    """The regular file at ``root / relative``, read without following a link on the
    way; None when there is none (or something else is there)."""
    parts = validate_artifact_path(str(relative)).parts
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for name in parts[:-1]:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = child
        try:
            file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            return None
        with os.fdopen(file_fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            return file.read()
    finally:
        os.close(fd)


def _open_dir(fd: int, relative: PurePosixPath, prefix: tuple[str, ...]) -> int:
    """Open the directory ``prefix[-1]`` under ``fd`` without following a link."""
    try:
        return os.open(prefix[-1], _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        # O_NOFOLLOW | O_DIRECTORY on a symlink reports ENOTDIR on Linux; ask which it was.
        try:
            is_link = stat.S_ISLNK(os.lstat(prefix[-1], dir_fd=fd).st_mode)
        except OSError:
            is_link = exc.errno == errno.ELOOP
        reason = "escapes the workspace through a symlink" if is_link else "is not a directory"
        raise _refused(relative, prefix, reason) from exc


def _check_destination(mode: int, relative: PurePosixPath) -> None:
    if stat.S_ISLNK(mode):
        raise _refused(relative, relative.parts, "is a symlink; it would be written through")
    if stat.S_ISDIR(mode):
        raise _refused(relative, relative.parts, "is a directory")


def _write_temp(fd: int, content: bytes) -> str:
    """A new file in directory ``fd`` holding ``content``, flushed to disk; its name."""
    for attempt in range(_TEMP_ATTEMPTS):
        temp = f".artifact-{secrets.token_hex(8)}.tmp"
        try:
            file_fd = os.open(temp, _TEMP_FLAGS, 0o644, dir_fd=fd)
        except FileExistsError:
            if attempt == _TEMP_ATTEMPTS - 1:
                raise
            continue
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(file_fd, view) :]
            os.fsync(file_fd)
        except BaseException:
            os.close(file_fd)
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=fd)
            raise
        os.close(file_fd)
        return temp
    raise AssertionError("unreachable")  # pragma: no cover


def _refused(relative: PurePosixPath, prefix: tuple[str, ...], reason: str) -> ArtifactPathRefused:
    path = str(relative)
    where = "/".join(prefix)
    subject = "it" if where == path else f"{shown_path(where)!r}"
    return ArtifactPathRefused(
        f"artifact path {shown_path(path)!r} is refused: {subject} {reason}",
        {"field": "artifacts.path", "path": shown_path(path)},
    )


class WorkspaceFiles:
    """The ``ArtifactWriter`` the services use: the two functions above."""

    def check(self, root: Path, relative: PurePosixPath) -> None:
        check_confined(root, relative)

    def write(self, root: Path, relative: PurePosixPath, content: bytes) -> Path:
        return write_confined(root, relative, content)

    def read(self, root: Path, relative: PurePosixPath) -> bytes | None:
        return read_confined(root, relative)
