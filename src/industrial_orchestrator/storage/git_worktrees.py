"""Every session works in a git working tree of its own, under the orchestrator's home.

``GitWorktrees.prepare`` gives a session its tree at ``<home>/worktrees/<session id>``:

* **A git repository** (the workspace, or a directory inside one): ``git worktree add``
  from the repository's top level on a new branch ``orchestrator/<8 hex>`` starting at
  its ``HEAD`` commit. The operator's checkout (working tree, index, current branch) is
  never touched; the branch stays in the repository for the operator to merge.
  ``Binding.source`` is the top level, so a caller that was given a subdirectory finds it
  at ``binding.path / workspace.relative_to(binding.source)``.
* **A repository with no commit yet**: there is no ``HEAD`` to start from, and
  committing in the operator's repository would move its branch. So the files on disk
  (what ``.gitignore`` does not ignore) are snapshotted through a temporary index into
  a parentless commit, which becomes the session branch's base: new objects and a new
  branch in the repository, nothing else.
* **A directory that is not a repository**: a fresh repository at the tree's path,
  seeded with a copy of the directory (symlinks copied as links, never followed; only
  ``.git`` entries, sockets, FIFOs and devices left out; the operator's directory is only
  read), and an initial commit. ``source`` is ``None``.
* **No workspace**: a fresh repository with one empty commit. ``source`` is ``None``.

``commit`` records a checkpoint (everything in the tree, untracked files included) and
``restore`` makes the tree exactly a recorded commit again. ``fork`` gives a retried
session a new tree starting at a checkpoint's commit: a ``git worktree add`` in the
operator's repository, or, for a fresh repository, a local clone, so the new tree never
depends on the old one, which may be removed first.

``snapshot``, ``fingerprint`` and ``roll_back`` serve the loop guard: a commit of the
files on no branch when a task's attempt starts, a tree id after each of its steps, and
the paths changed since the snapshot put back when the guard stops it. They stage
through a scratch index (``GIT_INDEX_FILE``), so the tree's index, ``HEAD`` and branch
never move.

A binding is recorded in ``<home>/worktrees/<session id>.json`` before ``prepare``
returns, so a second call (after a restart too) returns it, re-attaching the worktree
from its branch if its directory went missing. A directory without a finished record is
what an interrupted ``prepare`` left behind; nothing was committed in it yet, so it is
rebuilt.

Git runs without a shell, with a timeout on every call, no prompt, no hooks, no commit
signing and a fixed author, so it works with no git configuration, and with the
inherited ``GIT_*`` variables dropped, so nothing redirects it to another repository.
``GIT_CEILING_DIRECTORIES`` stops git from walking up out of a broken tree into a
repository that holds the orchestrator's home.

In one process, calls on one tree, and worktree changes in one repository, take turns
(``asyncio.Lock``). Git run by someone else at the same time (another replica, an agent
in the tree) can still hold a lock: a call that fails on one is retried with backoff, and
an ``index.lock`` of one of our trees older than the timeout, which no live call of ours
can hold, is deleted. A cancelled caller leaves git to finish in the background rather
than kill it half-way, which can leave such a lock behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import re
import shutil
import stat
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from ..domain.errors import WorkspaceGone as TreeGone
from ..domain.errors import WorkspaceUnusable
from ..domain.storable_text import storable
from ..domain.workspace_roots import BRANCH_PREFIX, branch_name
from .git_process import GitOutput, GitTimedOut, run_git

GIT_TIMEOUT_SECONDS = 120.0
# Git processes of this process at a time: the step workers' checkpoints, workspace
# writes and diffs side by side; more wait for a thread.
_GIT_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="git")
DIFF_MAX_BYTES = 1 << 20
AUTHOR_NAME = "Industrial Orchestrator"
AUTHOR_EMAIL = "orchestrator@localhost"
EFFECT_TRAILER = "Orchestrator-Effect"

_CONFIG = (
    f"user.name={AUTHOR_NAME}",
    f"user.email={AUTHOR_EMAIL}",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
)
# Another git process is changing the repository: it holds a lock (the index, a ref, the
# config), or it is half-way through registering a worktree that this one reads.
_BUSY = re.compile(r"\.lock'?: File exists|could not lock config file|failed to read .*worktrees/")
# A registration left by a worktree whose directory is gone; `git worktree prune` clears it.
_LOCK_FILE = re.compile(r"Unable to create '([^']+\.lock)': File exists")
_STALE = re.compile(r"missing but already registered|already checked out|already used by")
_LOCK_ATTEMPTS = 10
_LOCK_BACKOFF_SECONDS = 0.05
_LOCK_BACKOFF_MAX_SECONDS = 1.0
_STDERR_SHOWN = 2000
_COMMIT = re.compile(r"[0-9a-fA-F]{4,64}")
# Paths per `git checkout-index` call, well within the limit of a command line.
_PATHS_PER_CALL = 200


class WorkspaceError(WorkspaceUnusable):
    """A session's working tree could not be prepared, committed, restored or read."""


class WorkspaceGone(WorkspaceError, TreeGone):
    """A recorded working tree is gone and cannot be rebuilt from its branch."""

    code = "workspace_gone"


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a session works: its tree, the branch it commits to, where that started."""

    path: Path
    branch: str
    base_commit: str
    source: Path | None


@dataclass(frozen=True, slots=True)
class _Record:
    binding: Binding
    complete: bool


class GitWorktrees:
    """Working trees of sessions under ``home / "worktrees"``; see the module docstring."""

    def __init__(self, home: Path, *, timeout: float = GIT_TIMEOUT_SECONDS) -> None:
        self._home = home.resolve()
        self._trees = self._home / "worktrees"
        self._timeout = timeout
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # Sessions.

    async def prepare(self, session_id: UUID, workspace: Path | None) -> Binding:
        """The session's working tree, made on the first call and returned on the next.

        ``workspace`` is only read on the first call: a bound session stays bound.
        Raises ``WorkspaceError`` when the workspace is missing or git fails, and
        ``WorkspaceGone`` when the recorded tree vanished and cannot be rebuilt.
        """
        tree = self._tree(session_id)
        async with self._lock(f"tree:{tree}"):
            record = await asyncio.to_thread(_read_record, self._record_path(session_id))
            if record is not None and record.complete:
                return await self._reattach(record.binding)
            if workspace is None:
                return await self._fresh(session_id, None)
            directory = self._existing_directory(workspace)
            source = await self._toplevel(directory)
            if source is None:
                return await self._fresh(session_id, directory)
            return await self._linked(session_id, source, None, record)

    async def fork(
        self, path_from: Path, commit: str, session_id: UUID, source: Path | None
    ) -> Binding:
        """A working tree for ``session_id`` starting at ``commit`` of another session.

        With a ``source`` repository the new tree is a worktree of it on the new
        session's branch; without one, a local clone of ``path_from`` (all its objects,
        so a commit a restore left behind is still there) with its remote removed.
        Idempotent like ``prepare``. Raises ``WorkspaceGone`` when what it would start
        from (the repository, or the old tree of a fresh repository) no longer exists.
        """
        tree = self._tree(session_id)
        async with self._lock(f"tree:{tree}"):
            record = await asyncio.to_thread(_read_record, self._record_path(session_id))
            if record is not None and record.complete:
                return await self._reattach(record.binding)
            if source is not None:
                if not await asyncio.to_thread(source.is_dir):
                    raise WorkspaceGone(
                        f"the repository {source} to fork from is gone", {"source": str(source)}
                    )
                repository = self._existing_directory(source)
                start = await self._commit_sha(repository, commit)
                return await self._linked(session_id, repository, start, record)
            if not await asyncio.to_thread(os.path.lexists, path_from):
                raise WorkspaceGone(
                    f"the working tree {path_from} to fork from is gone", {"path": str(path_from)}
                )
            origin = self._owned(path_from)
            if not await self._is_tree(origin):
                raise WorkspaceGone(
                    f"the working tree {path_from} to fork from is no longer a repository",
                    {"path": str(path_from)},
                )
            start = await self._commit_sha(origin, commit)
            return await self._cloned(session_id, origin, start)

    async def binding(self, session_id: UUID) -> Binding | None:
        """The session's recorded binding, if it has one; nothing is made or re-attached."""
        record = await asyncio.to_thread(_read_record, self._record_path(session_id))
        return record.binding if record is not None and record.complete else None

    async def remove(self, session_id: UUID) -> None:
        """Delete the session's working tree; its branch stays for the operator to merge."""
        tree = self._tree(session_id)
        async with self._lock(f"tree:{tree}"):
            record_path = self._record_path(session_id)
            record = await asyncio.to_thread(_read_record, record_path)
            source = record.binding.source if record is not None else None
            if source is None:
                await _delete_tree(tree)
            else:
                async with self._lock(f"repo:{source}"):
                    await self._discard_linked(source, tree)
            await asyncio.to_thread(record_path.unlink, missing_ok=True)

    # Trees.

    async def commit(self, path: Path, message: str, *, keys: Sequence[str] = ()) -> str:
        """Commit everything in the tree (untracked files too, even nothing); the new sha.

        ``keys`` (the idempotency keys of the effects this commit is) go into the message
        as trailers, one a line, for ``find_commit`` to recognise the commit after a crash
        by any of them."""
        tree = self._owned(path)
        if "\x00" in message or any("\x00" in key or "\n" in key for key in keys):
            raise WorkspaceError("a commit message cannot contain a NUL character")
        if keys:
            trailers = "\n".join(f"{EFFECT_TRAILER}: {key}" for key in keys)
            message = f"{message}\n\n{trailers}"
        async with self._lock(f"tree:{tree}"):
            await self._git(tree, "add", "-A")
            await self._git(
                tree,
                "commit",
                "-q",
                "--allow-empty",
                "--allow-empty-message",
                "--no-verify",
                "-m",
                message,
            )
            return await self._commit_sha(tree, "HEAD")

    async def find_commit(self, path: Path, key: str) -> str | None:
        """The commit on the tree's branch made with ``key``, if any."""
        tree = self._owned(path)
        async with self._lock(f"tree:{tree}"):
            output = await self._git(
                tree,
                "log",
                "-F",
                f"--grep={EFFECT_TRAILER}: {key}",
                "--format=%H%x00%B%x01",
                "HEAD",
                "--",
            )
        for entry in output.stdout.decode("utf-8", "replace").split("\x01"):
            sha, _, body = entry.strip().partition("\x00")
            # --grep matches a substring: a longer key that starts with ``key`` is not it.
            if sha and f"{EFFECT_TRAILER}: {key}" in body.splitlines():
                return sha
        return None

    async def restore(self, path: Path, commit: str) -> None:
        """Make the tree exactly ``commit``: tracked files reset, everything else deleted."""
        tree = self._owned(path)
        async with self._lock(f"tree:{tree}"):
            sha = await self._commit_sha(tree, commit)
            await self._git(tree, "reset", "-q", "--hard", sha)
            # -ff: also nested repositories an agent may have cloned or initialised.
            await self._git(tree, "clean", "-q", "-ffdx")

    async def diff(self, path: Path, base: str, *, max_bytes: int = DIFF_MAX_BYTES) -> str:
        """Unified diff of the whole tree (uncommitted and untracked files too) against ``base``.

        Output past ``max_bytes`` is cut at a line boundary and ends with a line saying so.
        """
        tree = self._owned(path)
        async with self._lock(f"tree:{tree}"):
            sha = await self._commit_sha(tree, base)
            await self._git(tree, "add", "-A")
            output = await self._git(
                tree,
                "diff",
                "--cached",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                sha,
                "--",
                max_output=max_bytes,
            )
        if not output.truncated:
            return _shown(output.stdout)
        kept = output.stdout[: output.stdout.rfind(b"\n") + 1]
        return (
            _shown(kept)
            + f"[diff cut: it is longer than {max_bytes} bytes; the rest is not shown]\n"
        )

    async def changed_files(self, path: Path, base: str) -> list[str]:
        """Paths added, modified or deleted since ``base``, untracked files included. A
        name that is not UTF-8 has U+FFFD for its bad bytes: for showing, not opening."""
        tree = self._owned(path)
        async with self._lock(f"tree:{tree}"):
            sha = await self._commit_sha(tree, base)
            await self._git(tree, "add", "-A")
            output = await self._git(
                tree, "diff", "--cached", "--name-only", "-z", "--no-renames", sha, "--"
            )
        return [_shown(name) for name in output.stdout.split(b"\x00") if name]

    # Snapshots of a task's attempt (the loop guard): never a ref, the index or HEAD moved.

    async def fingerprint(self, path: Path) -> str:
        """The id of the git tree the files make now (ignored files left out): the same
        id means the same files."""
        tree = self._owned(path)
        async with self._lock(f"tree:{tree}"):
            return await self._files_tree(tree)

    async def snapshot(self, path: Path, message: str) -> str:
        """A commit of the files as they are now, on no branch (its parent is ``HEAD``);
        ``roll_back`` returns to it. It lives as long as git keeps unreachable objects
        (two weeks by default), far longer than an attempt."""
        tree = self._owned(path)
        if "\x00" in message:
            raise WorkspaceError("a commit message cannot contain a NUL character")
        async with self._lock(f"tree:{tree}"):
            files = await self._files_tree(tree)
            created = await self._git(tree, "commit-tree", files, "-p", "HEAD", "-m", message)
            return created.stdout.decode().strip()

    async def roll_back(self, path: Path, snapshot: str) -> list[str]:
        """Put back the files that changed since ``snapshot``: changed or deleted ones
        restored, new ones deleted. Only those paths are touched, so a task running
        beside in the same tree keeps its files unless they changed too (which the
        file-conflict scheduling avoids). Ignored files are left as they are. Returns
        the paths put back, shown as ``changed_files`` shows them."""
        tree = self._owned(path)
        async with self._lock(f"tree:{tree}"):
            sha = await self._commit_sha(tree, snapshot)
            files = await self._files_tree(tree)
            output = await self._git(
                tree, "diff-tree", "-r", "-z", "--no-renames", "--name-status", sha, files
            )
            fields = output.stdout.split(b"\x00")
            # The real names (undecodable bytes kept as surrogates, which ``os`` and the
            # git command line turn back into the same bytes) to act on; shown ones to return.
            changes = [
                (status.decode(), os.fsdecode(name), _shown(name))
                for status, name in zip(fields[0::2], fields[1::2], strict=False)
                if name
            ]
            # New paths first: one may stand where a restored file's directory goes.
            await asyncio.to_thread(_delete_paths, tree, [n for s, n, _ in changes if s == "A"])
            restored = [name for status, name, _ in changes if status != "A"]
            if restored:
                async with self._scratch_index(tree, seeded=False) as index:
                    await self._git(tree, "read-tree", sha, env=index)
                    for start in range(0, len(restored), _PATHS_PER_CALL):
                        chunk = restored[start : start + _PATHS_PER_CALL]
                        await self._git(tree, "checkout-index", "-f", "-q", "--", *chunk, env=index)
        return sorted(shown for _, _, shown in changes)

    async def _files_tree(self, tree: Path) -> str:
        """The tree id of the files on disk, staged through a scratch index."""
        async with self._scratch_index(tree, seeded=True) as index:
            await self._git(tree, "add", "-A", env=index)
            return (await self._git(tree, "write-tree", env=index)).stdout.decode().strip()

    @contextlib.asynccontextmanager
    async def _scratch_index(self, tree: Path, *, seeded: bool) -> AsyncIterator[dict[str, str]]:
        """The environment of a throw-away index for ``tree``, leaving the tree's own
        alone. ``seeded``: a copy of the tree's index, so that files unchanged since it
        was written are not read and hashed again."""
        await asyncio.to_thread(self._home.mkdir, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._home) as scratch:
            index = Path(scratch) / "index"
            if seeded:
                found = await self._git(tree, "rev-parse", "--git-path", "index")
                own = tree / os.fsdecode(found.stdout.rstrip(b"\n"))
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(shutil.copyfile, own, index)
            yield {"GIT_INDEX_FILE": str(index)}

    # How trees are made.

    async def _fresh(self, session_id: UUID, seed: Path | None) -> Binding:
        tree = self._tree(session_id)
        await _delete_tree(tree)
        await asyncio.to_thread(self._trees.mkdir, parents=True, exist_ok=True)
        if seed is None:
            await asyncio.to_thread(tree.mkdir)
            message = f"Empty workspace for session {session_id}"
        else:
            await asyncio.to_thread(_copy_directory, seed, tree, self._home)
            message = f"Workspace {seed} as given to session {session_id}"
        branch = branch_name(session_id)
        await self._git(tree, "init", "-q", f"--initial-branch={branch}")
        await self._git(tree, "add", "-A")
        await self._git(tree, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
        binding = Binding(tree, branch, await self._commit_sha(tree, "HEAD"), None)
        await asyncio.to_thread(
            _write_record, self._record_path(session_id), _Record(binding, complete=True)
        )
        return binding

    async def _linked(
        self, session_id: UUID, source: Path, start: str | None, intent: _Record | None
    ) -> Binding:
        """A worktree of ``source``; ``start`` None means its HEAD (or a snapshot)."""
        tree = self._tree(session_id)
        record_path = self._record_path(session_id)
        async with self._lock(f"repo:{source}"):
            if intent is not None and intent.binding.source == source:
                # An interrupted prepare: the branch it named is ours, commits or not.
                branch, base = intent.binding.branch, intent.binding.base_commit
            else:
                base = start or await self._head_or_snapshot(source, session_id)
                branch = await self._free_branch(source, session_id)
                # Recorded before the branch exists, so a retry knows the branch is ours.
                await asyncio.to_thread(
                    _write_record, record_path, _Record(Binding(tree, branch, base, source), False)
                )
            if await self._branch_exists(source, branch):
                base = await self._commit_sha(source, f"refs/heads/{branch}")
            await asyncio.to_thread(self._trees.mkdir, parents=True, exist_ok=True)
            await self._add_worktree(source, tree, branch, base)
        binding = Binding(tree, branch, base, source)
        await asyncio.to_thread(_write_record, record_path, _Record(binding, complete=True))
        return binding

    async def _cloned(self, session_id: UUID, origin: Path, start: str) -> Binding:
        tree = self._tree(session_id)
        branch = branch_name(session_id)
        await _delete_tree(tree)
        await asyncio.to_thread(self._trees.mkdir, parents=True, exist_ok=True)
        await self._git(self._trees, "clone", "-q", "--no-checkout", "--", str(origin), str(tree))
        cloned_head = await self._git(tree, "symbolic-ref", "-q", "--short", "HEAD", check=False)
        await self._git(tree, "checkout", "-q", "-f", "-B", branch, start)
        old_branch = cloned_head.stdout.decode().strip()
        if cloned_head.returncode == 0 and old_branch and old_branch != branch:
            await self._git(tree, "branch", "-q", "-D", old_branch)
        await self._git(tree, "remote", "remove", "origin")
        binding = Binding(tree, branch, start, None)
        await asyncio.to_thread(
            _write_record, self._record_path(session_id), _Record(binding, complete=True)
        )
        return binding

    async def _reattach(self, binding: Binding) -> Binding:
        if await self._is_tree(binding.path):
            return binding
        source = binding.source
        if source is None:
            raise WorkspaceGone(
                f"the working tree {binding.path} is gone and had no repository to rebuild it from",
                {"path": str(binding.path)},
            )
        async with self._lock(f"repo:{source}"):
            if not await asyncio.to_thread(source.is_dir) or not await self._branch_exists(
                source, binding.branch
            ):
                raise WorkspaceGone(
                    f"the working tree {binding.path} is gone and its branch"
                    f" {binding.branch!r} is no longer in {source}",
                    {"path": str(binding.path), "branch": binding.branch},
                )
            await self._add_worktree(source, binding.path, binding.branch, binding.base_commit)
        return binding

    async def _add_worktree(self, source: Path, tree: Path, branch: str, start: str) -> None:
        """``git worktree add``, retried while another git process holds a repository lock.

        A failed attempt may leave the branch created; the next one checks it out.
        """
        for attempt in range(_LOCK_ATTEMPTS):
            if await asyncio.to_thread(os.path.lexists, tree):
                await self._discard_linked(source, tree)
            if await self._branch_exists(source, branch):
                args = ["worktree", "add", "-q", str(tree), branch]
            else:
                args = ["worktree", "add", "-q", "-b", branch, str(tree), start]
            output = await self._git(source, *args, check=False, retry=False)
            if output.returncode == 0:
                return
            last = attempt == _LOCK_ATTEMPTS - 1
            if _STALE.search(output.stderr) and not last:
                await self._git(source, "worktree", "prune")
            elif _BUSY.search(output.stderr) and not last:
                await _back_off(attempt)
            else:
                raise _failed(source, args, output)

    async def _discard_linked(self, source: Path, tree: Path) -> None:
        """Remove a worktree of ``source`` whatever state its directory is in."""
        if await asyncio.to_thread(os.path.lexists, tree):
            removed = await self._git(
                source, "worktree", "remove", "--force", "--force", str(tree), check=False
            )
            if removed.returncode == 0:
                return
            await _delete_tree(tree)
        if await asyncio.to_thread(source.is_dir):
            await self._git(source, "worktree", "prune")

    async def _head_or_snapshot(self, source: Path, session_id: UUID) -> str:
        head = await self._git(source, "rev-parse", "-q", "--verify", "HEAD^{commit}", check=False)
        if head.returncode == 0:
            return head.stdout.decode().strip()
        # No commit yet: snapshot the files into a commit without touching the repository's
        # index, HEAD or working tree.
        await asyncio.to_thread(self._home.mkdir, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._home) as scratch:
            index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            pathspec = ["--", "."]
            if self._home.is_relative_to(source):
                pathspec.append(f":(exclude){self._home.relative_to(source)}")
            await self._git(source, "add", "-A", *pathspec, env=index)
            tree = (await self._git(source, "write-tree", env=index)).stdout.decode().strip()
        message = f"Files of {source} (no commit yet) as given to session {session_id}"
        created = await self._git(source, "commit-tree", tree, "-m", message)
        return created.stdout.decode().strip()

    async def _free_branch(self, source: Path, session_id: UUID) -> str:
        # The 8-digit name can clash (another session, or an operator's branch); an existing
        # branch is never reused or reset, so such a session gets the full id instead.
        for branch in (branch_name(session_id), f"{BRANCH_PREFIX}{session_id.hex}"):
            if not await self._branch_exists(source, branch):
                return branch
        full = f"{BRANCH_PREFIX}{session_id.hex}"
        raise WorkspaceError(
            f"branches {branch_name(session_id)!r} and {full!r} already exist in {source}",
            {"source": str(source)},
        )

    # Queries.

    async def _toplevel(self, directory: Path) -> Path | None:
        """The top level of the work tree holding ``directory``, None outside any repository."""
        output = await self._git(directory, "rev-parse", "--show-toplevel", check=False)
        if output.returncode == 0:
            return Path(os.fsdecode(output.stdout.rstrip(b"\n")))
        if "not a git repository" in output.stderr:
            return None
        if "must be run in a work tree" in output.stderr:
            raise WorkspaceError(
                f"workspace {directory} is a bare repository or a .git directory;"
                " give the directory of a working tree",
                {"workspace": str(directory)},
            )
        raise _failed(directory, ["rev-parse", "--show-toplevel"], output)

    async def _is_tree(self, path: Path) -> bool:
        """Whether ``path`` is a working tree of its own; a failing git is an error, not No.

        A No gets the directory rebuilt, so it must mean the tree is broken.
        """
        if not await asyncio.to_thread(path.is_dir):
            return False
        output = await self._git(path, "rev-parse", "--show-toplevel", check=False)
        if output.returncode == 0:
            return output.stdout.rstrip(b"\n") == os.fsencode(path)
        if "not a git repository" in output.stderr:
            return False
        raise _failed(path, ["rev-parse", "--show-toplevel"], output)

    async def _branch_exists(self, source: Path, branch: str) -> bool:
        output = await self._git(
            source, "show-ref", "--verify", "-q", f"refs/heads/{branch}", check=False
        )
        return output.returncode == 0

    async def _commit_sha(self, cwd: Path, commit: str) -> str:
        if (
            commit != "HEAD"
            and not commit.startswith("refs/heads/")
            and not _COMMIT.fullmatch(commit)
        ):
            raise WorkspaceError(f"{commit[:80]!r} is not a commit id", {"commit": commit[:80]})
        output = await self._git(
            cwd, "rev-parse", "-q", "--verify", f"{commit}^{{commit}}", check=False
        )
        if output.returncode != 0:
            raise WorkspaceError(
                f"commit {commit} is not in the repository at {cwd}",
                {"commit": commit, "path": str(cwd)},
            )
        return output.stdout.decode().strip()

    # Paths.

    def _tree(self, session_id: UUID) -> Path:
        return self._trees / str(session_id)

    def _record_path(self, session_id: UUID) -> Path:
        return self._trees / f"{session_id}.json"

    def _owned(self, path: Path) -> Path:
        """``path`` as one of our trees; anything else is refused (``restore`` deletes files)."""
        resolved = path.resolve()
        if resolved.parent != self._trees or not resolved.is_dir():
            raise WorkspaceError(
                f"{path} is not a working tree of this orchestrator", {"path": str(path)}
            )
        return resolved

    def _existing_directory(self, workspace: Path) -> Path:
        try:
            directory = workspace.resolve(strict=True)
        except FileNotFoundError:
            raise WorkspaceError(
                f"workspace {workspace} does not exist", {"workspace": str(workspace)}
            ) from None
        except OSError as exc:
            raise WorkspaceError(
                f"workspace {workspace} cannot be read: {exc.strerror}",
                {"workspace": str(workspace)},
            ) from exc
        if not directory.is_dir():
            raise WorkspaceError(
                f"workspace {workspace} is not a directory", {"workspace": str(workspace)}
            )
        if directory.is_relative_to(self._home):
            raise WorkspaceError(
                f"workspace {workspace} is inside the orchestrator's home {self._home}",
                {"workspace": str(workspace)},
            )
        return directory

    # Locks.

    @contextlib.asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        """One holder at a time per tree and per source repository, in this process."""
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            yield

    # Running git.

    async def _git(
        self,
        cwd: Path,
        *args: str,
        check: bool = True,
        retry: bool = True,
        env: Mapping[str, str] | None = None,
        max_output: int | None = None,
    ) -> GitOutput:
        """Run ``git -C cwd args``; raise ``WorkspaceError`` when it fails and ``check``.

        With ``retry``, a failure on another git process's lock is retried after a pause:
        git takes its locks before it changes anything, so the retry is safe.
        """
        for attempt in range(_LOCK_ATTEMPTS):
            output = await self._run(cwd, args, env, max_output)
            if output.returncode == 0 or output.truncated:
                return output
            if not (retry and _BUSY.search(output.stderr)) or attempt == _LOCK_ATTEMPTS - 1:
                break
            if not await self._cleared_stale_index_lock(cwd, output.stderr):
                await _back_off(attempt)
        if check:
            raise _failed(cwd, args, output)
        return output

    async def _cleared_stale_index_lock(self, cwd: Path, stderr: str) -> bool:
        """Delete the ``index.lock`` of one of our trees if no live git can be holding it.

        Each of our git calls ends within the timeout, so a lock older than that was left
        by a git that died (killed, or the machine went down); without this, every later
        commit in the tree would fail on it.
        """
        match = _LOCK_FILE.search(stderr)
        if match is None or cwd.parent != self._trees:
            return False
        lock = Path(match.group(1))
        found = await self._git(cwd, "rev-parse", "--absolute-git-dir", check=False, retry=False)
        git_dir = Path(os.fsdecode(found.stdout.rstrip(b"\n")))
        if found.returncode != 0 or lock != git_dir / "index.lock":
            return False
        try:
            modified = (await asyncio.to_thread(lock.stat)).st_mtime
        except FileNotFoundError:
            return True
        if time.time() - modified < self._timeout:
            return False
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(lock.unlink)
        return True

    async def _run(
        self,
        cwd: Path,
        args: tuple[str, ...],
        env: Mapping[str, str] | None,
        max_output: int | None,
    ) -> GitOutput:
        """One git process, in a thread of its own (``git_process``). A caller that gives
        up does not stop it: it finishes in its thread, within the timeout."""
        command = ["git"]
        for setting in _CONFIG:
            command += ["-c", setting]
        command += ["-C", str(cwd), *args]
        run = asyncio.get_running_loop().run_in_executor(
            _GIT_THREADS,
            functools.partial(
                run_git,
                command,
                self._environment(env),
                timeout=self._timeout,
                max_output=max_output,
            ),
        )
        # A caller cancelled meanwhile leaves the outcome to nobody: look at it here, so
        # that an error is not reported as never retrieved.
        run.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            return await asyncio.shield(run)
        except FileNotFoundError as exc:
            raise WorkspaceError("git is not installed (no 'git' on PATH)") from exc
        except GitTimedOut:
            raise WorkspaceError(
                f"git {args[0]} in {cwd} did not finish within {self._timeout:g} s",
                {"command": _shown_command(args), "path": str(cwd)},
            ) from None

    def _environment(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        environment.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_OPTIONAL_LOCKS="0",
            GIT_CEILING_DIRECTORIES=str(self._trees),
            LC_ALL="C",
        )
        environment.update(extra or {})
        return environment


async def _back_off(attempt: int) -> None:
    """Sleep before retrying, longer each time, jittered so racing replicas fall out of step."""
    delay = min(_LOCK_BACKOFF_MAX_SECONDS, _LOCK_BACKOFF_SECONDS * 2**attempt)
    await asyncio.sleep(delay * (0.5 + random.random()))


def _failed(cwd: Path, args: list[str] | tuple[str, ...], output: GitOutput) -> WorkspaceError:
    stderr = output.stderr.strip()
    if len(stderr) > _STDERR_SHOWN:
        stderr = "…" + stderr[-_STDERR_SHOWN:]
    return WorkspaceError(
        f"git {args[0]} failed in {cwd} (exit {output.returncode}): {stderr or 'no message'}",
        {"command": _shown_command(args), "path": str(cwd), "stderr": stderr},
    )


def _shown_command(args: list[str] | tuple[str, ...]) -> str:
    # The arguments may be file names an agent made, undecodable bytes and all.
    return storable(" ".join(["git", *args])[:200])


def _shown(raw: bytes) -> str:
    """Git's output about a tree (file names, diff text) as text anyone can be served and
    any database can keep: an agent's shell can name a file with bytes that are not UTF-8
    (and write a NUL past where git looks for one to call a file binary). Each such byte
    becomes U+FFFD, by the rule the rest of an agent's output follows
    (``domain.storable_text``); git's own C-style quoting would instead show every
    non-ASCII name escaped, and ``-z`` output is never quoted."""
    return storable(raw.decode("utf-8", "replace"))


# Files.


def _copy_directory(source: Path, destination: Path, home: Path) -> None:
    """Copy ``source`` to ``destination`` (which must not exist) without following links.

    Left out: every ``.git`` entry, the orchestrator's home if it lies inside, and what
    git cannot store (sockets, FIFOs, devices; reading a FIFO would block forever).
    """

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped: set[str] = set()
        for name in names:
            full = os.path.join(directory, name)
            if name == ".git" or full == str(home):
                skipped.add(name)
                continue
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(full).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    skipped.add(name)
        return skipped

    try:
        shutil.copytree(source, destination, symlinks=True, ignore=ignore)
    except shutil.Error as exc:
        failures = [f"{src}: {why}" for src, _dst, why in exc.args[0][:5]]
        raise WorkspaceError(
            f"workspace {source} could not be copied: " + "; ".join(failures),
            {"workspace": str(source)},
        ) from exc
    except OSError as exc:
        raise WorkspaceError(
            f"workspace {source} could not be copied: {exc}", {"workspace": str(source)}
        ) from exc


async def _delete_tree(tree: Path) -> None:
    await asyncio.to_thread(_rmtree, tree)


def _rmtree(tree: Path) -> None:
    """Delete ``tree`` even where an agent made directories unreadable or read-only."""
    if not os.path.lexists(tree):
        return
    if tree.is_symlink() or not tree.is_dir():
        tree.unlink()
        return
    try:
        shutil.rmtree(tree)
    except PermissionError:
        # Top-down, each directory is opened up before it is listed; links are not followed.
        os.chmod(tree, stat.S_IRWXU)
        for directory, names, _files in os.walk(tree):
            for name in names:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(tree)


def _delete_paths(tree: Path, names: list[str]) -> None:
    """Delete these paths of ``tree`` (files, links, or directories such as a nested
    repository), then the directories they leave empty; never through a link."""
    for name in names:
        full = tree / name
        if not full.parent.resolve().is_relative_to(tree):
            continue  # a directory on the way was replaced by a link: not ours to follow
        if full.is_dir() and not full.is_symlink():
            _rmtree(full)
        else:
            with contextlib.suppress(FileNotFoundError):
                full.unlink()
        parent = full.parent
        while parent != tree:
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): the rest of the way up stays
                break
            parent = parent.parent


def _read_record(path: Path) -> _Record | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    source = data["source"]
    return _Record(
        Binding(
            path=Path(data["path"]),
            branch=data["branch"],
            base_commit=data["base_commit"],
            source=None if source is None else Path(source),
        ),
        complete=bool(data["complete"]),
    )


def _write_record(path: Path, record: _Record) -> None:
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
