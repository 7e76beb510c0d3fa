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
  seeded with a copy of the directory (``copying``), and an initial commit. ``source``
  is ``None``.
* **No workspace**: a fresh repository with one empty commit. ``source`` is ``None``.

``fork`` gives a retried session a new tree starting at a checkpoint's commit: a ``git
worktree add`` in the operator's repository, or, for a fresh repository, a local clone,
so the new tree never depends on the old one, which may be removed first.

A binding is recorded (``bindings``) before ``prepare`` returns, so a second call (after
a restart too) returns it, re-attaching the worktree from its branch if its directory
went missing. A directory without a finished record is what an interrupted ``prepare``
left behind; nothing was committed in it yet, so it is rebuilt.

``GitWorktrees`` is also what the rest of the orchestrator holds to work in a tree once
it is made: checkpoints (``commits``), diffs (``diffs``) and the loop guard's snapshots
(``snapshots``), all run through one ``GitCommands`` so that calls on a tree take turns.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

from ..domain.errors import WorkspaceGone
from ..domain.workspace_roots import BRANCH_PREFIX, branch_name
from . import commits, diffs, snapshots
from .bindings import Binding, Record, read_record, write_record
from .copying import copy_directory
from .deleting import delete_tree
from .diffs import DIFF_MAX_BYTES
from .git_commands import (
    BUSY,
    GIT_TIMEOUT_SECONDS,
    LOCK_ATTEMPTS,
    GitCommands,
    WorkspaceError,
    back_off,
    failed,
)

# A registration left by a worktree whose directory is gone; `git worktree prune` clears it.
_STALE = re.compile(r"missing but already registered|already checked out|already used by")


class GitWorktrees:
    """Working trees of sessions under ``home / "worktrees"``; see the module docstring."""

    def __init__(self, home: Path, *, timeout: float = GIT_TIMEOUT_SECONDS) -> None:
        self._git = GitCommands(home, timeout=timeout)
        self._home = self._git.home
        self._trees = self._git.trees

    # Sessions.

    async def prepare(self, session_id: UUID, workspace: Path | None) -> Binding:
        """The session's working tree, made on the first call and returned on the next.

        ``workspace`` is only read on the first call: a bound session stays bound.
        Raises ``WorkspaceError`` when the workspace is missing or git fails, and
        ``WorkspaceGone`` when the recorded tree vanished and cannot be rebuilt.
        """
        tree = self._tree(session_id)
        async with self._git.lock(f"tree:{tree}"):
            record = await asyncio.to_thread(read_record, self._record_path(session_id))
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
        async with self._git.lock(f"tree:{tree}"):
            record = await asyncio.to_thread(read_record, self._record_path(session_id))
            if record is not None and record.complete:
                return await self._reattach(record.binding)
            if source is not None:
                if not await asyncio.to_thread(source.is_dir):
                    raise WorkspaceGone(
                        f"the repository {source} to fork from is gone", {"source": str(source)}
                    )
                repository = self._existing_directory(source)
                start = await self._git.commit_sha(repository, commit)
                return await self._linked(session_id, repository, start, record)
            if not await asyncio.to_thread(os.path.lexists, path_from):
                raise WorkspaceGone(
                    f"the working tree {path_from} to fork from is gone", {"path": str(path_from)}
                )
            origin = self._git.owned(path_from)
            if not await self._is_tree(origin):
                raise WorkspaceGone(
                    f"the working tree {path_from} to fork from is no longer a repository",
                    {"path": str(path_from)},
                )
            start = await self._git.commit_sha(origin, commit)
            return await self._cloned(session_id, origin, start)

    async def binding(self, session_id: UUID) -> Binding | None:
        """The session's recorded binding, if it has one; nothing is made or re-attached."""
        record = await asyncio.to_thread(read_record, self._record_path(session_id))
        return record.binding if record is not None and record.complete else None

    async def remove(self, session_id: UUID) -> None:
        """Delete the session's working tree; its branch stays for the operator to merge."""
        tree = self._tree(session_id)
        async with self._git.lock(f"tree:{tree}"):
            record_path = self._record_path(session_id)
            record = await asyncio.to_thread(read_record, record_path)
            source = record.binding.source if record is not None else None
            if source is None:
                await delete_tree(tree)
            else:
                async with self._git.lock(f"repo:{source}"):
                    await self._discard_linked(source, tree)
            await asyncio.to_thread(record_path.unlink, missing_ok=True)

    # Trees: checkpoints, diffs and snapshots, each in a module of its own.

    async def commit(self, path: Path, message: str, *, keys: Sequence[str] = ()) -> str:
        """Commit everything in the tree; the new sha (``commits.commit``)."""
        return await commits.commit(self._git, path, message, keys=keys)

    async def clean_head(self, path: Path) -> str | None:
        """HEAD's commit if the tree holds nothing to commit (``commits.clean_head``)."""
        return await commits.clean_head(self._git, path)

    async def find_commit(self, path: Path, key: str) -> str | None:
        """The commit on the tree's branch made with ``key``, if any."""
        return await commits.find_commit(self._git, path, key)

    async def restore(self, path: Path, commit: str) -> None:
        """Make the tree exactly ``commit`` (``commits.restore``)."""
        await commits.restore(self._git, path, commit)

    async def diff(self, path: Path, base: str, *, max_bytes: int = DIFF_MAX_BYTES) -> str:
        """Unified diff of the whole tree against ``base``, cut past ``max_bytes``."""
        return await diffs.diff(self._git, path, base, max_bytes=max_bytes)

    async def changed_since(self, path: Path, commit: str) -> bool:
        """Whether HEAD or the files moved on from ``commit`` (``diffs.changed_since``)."""
        return await diffs.changed_since(self._git, path, commit)

    async def changed_files(self, path: Path, base: str) -> list[str]:
        """Paths added, modified or deleted since ``base`` (``diffs.changed_files``)."""
        return await diffs.changed_files(self._git, path, base)

    async def fingerprint(self, path: Path) -> str:
        """The id of the git tree the files make now (``snapshots.fingerprint``)."""
        return await snapshots.fingerprint(self._git, path)

    async def snapshot(self, path: Path, message: str) -> str:
        """A commit of the files as they are now, on no branch (``snapshots.snapshot``)."""
        return await snapshots.snapshot(self._git, path, message)

    async def roll_back(self, path: Path, snapshot: str) -> list[str]:
        """Put back the files changed since ``snapshot`` (``snapshots.roll_back``)."""
        return await snapshots.roll_back(self._git, path, snapshot)

    # How trees are made.

    async def _fresh(self, session_id: UUID, seed: Path | None) -> Binding:
        tree = self._tree(session_id)
        await delete_tree(tree)
        await asyncio.to_thread(self._trees.mkdir, parents=True, exist_ok=True)
        branch = branch_name(session_id)
        if seed is None:
            await asyncio.to_thread(tree.mkdir)
            message = f"Empty workspace for session {session_id}"
            await self._git.init(tree, branch)  # nothing to add: its first commit is empty
        else:
            await asyncio.to_thread(copy_directory, seed, tree, self._home)
            message = f"Workspace {seed} as given to session {session_id}"
            await self._git.init(tree, branch)
            await self._git.run(tree, "add", "-A")
        binding = Binding(tree, branch, await self._git.commit_index(tree, message), None)
        await asyncio.to_thread(
            write_record, self._record_path(session_id), Record(binding, complete=True)
        )
        return binding

    async def _linked(
        self, session_id: UUID, source: Path, start: str | None, intent: Record | None
    ) -> Binding:
        """A worktree of ``source``; ``start`` None means its HEAD (or a snapshot)."""
        tree = self._tree(session_id)
        record_path = self._record_path(session_id)
        async with self._git.lock(f"repo:{source}"):
            if intent is not None and intent.binding.source == source:
                # An interrupted prepare: the branch it named is ours, commits or not.
                branch, base = intent.binding.branch, intent.binding.base_commit
            else:
                base = start or await self._head_or_snapshot(source, session_id)
                branch = await self._free_branch(source, session_id)
                # Recorded before the branch exists, so a retry knows the branch is ours.
                await asyncio.to_thread(
                    write_record, record_path, Record(Binding(tree, branch, base, source), False)
                )
            if await self._branch_exists(source, branch):
                base = await self._git.commit_sha(source, f"refs/heads/{branch}")
            await asyncio.to_thread(self._trees.mkdir, parents=True, exist_ok=True)
            await self._add_worktree(source, tree, branch, base)
        binding = Binding(tree, branch, base, source)
        await asyncio.to_thread(write_record, record_path, Record(binding, complete=True))
        return binding

    async def _cloned(self, session_id: UUID, origin: Path, start: str) -> Binding:
        tree = self._tree(session_id)
        branch = branch_name(session_id)
        await delete_tree(tree)
        await asyncio.to_thread(self._trees.mkdir, parents=True, exist_ok=True)
        await self._git.run(
            self._trees, "clone", "-q", "--no-checkout", "--", str(origin), str(tree)
        )
        cloned_head = await self._git.run(
            tree, "symbolic-ref", "-q", "--short", "HEAD", check=False
        )
        await self._git.run(tree, "checkout", "-q", "-f", "-B", branch, start)
        old_branch = cloned_head.stdout.decode().strip()
        if cloned_head.returncode == 0 and old_branch and old_branch != branch:
            await self._git.run(tree, "branch", "-q", "-D", old_branch)
        await self._git.run(tree, "remote", "remove", "origin")
        binding = Binding(tree, branch, start, None)
        await asyncio.to_thread(
            write_record, self._record_path(session_id), Record(binding, complete=True)
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
        async with self._git.lock(f"repo:{source}"):
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
        for attempt in range(LOCK_ATTEMPTS):
            if await asyncio.to_thread(os.path.lexists, tree):
                await self._discard_linked(source, tree)
            if await self._branch_exists(source, branch):
                args = ["worktree", "add", "-q", str(tree), branch]
            else:
                args = ["worktree", "add", "-q", "-b", branch, str(tree), start]
            output = await self._git.run(source, *args, check=False, retry=False)
            if output.returncode == 0:
                return
            last = attempt == LOCK_ATTEMPTS - 1
            if _STALE.search(output.stderr) and not last:
                await self._git.run(source, "worktree", "prune")
            elif BUSY.search(output.stderr) and not last:
                await back_off(attempt)
            else:
                raise failed(source, args, output)

    async def _discard_linked(self, source: Path, tree: Path) -> None:
        """Remove a worktree of ``source`` whatever state its directory is in."""
        if await asyncio.to_thread(os.path.lexists, tree):
            removed = await self._git.run(
                source, "worktree", "remove", "--force", "--force", str(tree), check=False
            )
            if removed.returncode == 0:
                return
            await delete_tree(tree)
        if await asyncio.to_thread(source.is_dir):
            await self._git.run(source, "worktree", "prune")

    async def _head_or_snapshot(self, source: Path, session_id: UUID) -> str:
        head = await self._git.run(
            source, "rev-parse", "-q", "--verify", "HEAD^{commit}", check=False
        )
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
            await self._git.run(source, "add", "-A", *pathspec, env=index)
            tree = (await self._git.run(source, "write-tree", env=index)).stdout.decode().strip()
        message = f"Files of {source} (no commit yet) as given to session {session_id}"
        created = await self._git.run(source, "commit-tree", tree, "-m", message)
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
        output = await self._git.run(directory, "rev-parse", "--show-toplevel", check=False)
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
        raise failed(directory, ["rev-parse", "--show-toplevel"], output)

    async def _is_tree(self, path: Path) -> bool:
        """Whether ``path`` is a working tree of its own; a failing git is an error, not No.

        A No gets the directory rebuilt, so it must mean the tree is broken.
        """
        if not await asyncio.to_thread(path.is_dir):
            return False
        output = await self._git.run(path, "rev-parse", "--show-toplevel", check=False)
        if output.returncode == 0:
            return output.stdout.rstrip(b"\n") == os.fsencode(path)
        if "not a git repository" in output.stderr:
            return False
        raise failed(path, ["rev-parse", "--show-toplevel"], output)

    async def _branch_exists(self, source: Path, branch: str) -> bool:
        output = await self._git.run(
            source, "show-ref", "--verify", "-q", f"refs/heads/{branch}", check=False
        )
        return output.returncode == 0

    # Paths.

    def _tree(self, session_id: UUID) -> Path:
        return self._trees / str(session_id)

    def _record_path(self, session_id: UUID) -> Path:
        return self._trees / f"{session_id}.json"

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
