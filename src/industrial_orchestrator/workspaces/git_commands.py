"""Git as the orchestrator runs it in the working trees under its home.

Git runs without a shell, with a timeout on every call, no prompt, no hooks, no commit
signing and a fixed author, so it works with no git configuration, and with the
inherited ``GIT_*`` variables dropped, so nothing redirects it to another repository.
``GIT_CEILING_DIRECTORIES`` stops git from walking up out of a broken tree into a
repository that holds the orchestrator's home.

In one process, calls on one tree, and worktree changes in one repository, take turns
(``GitCommands.lock``). Git run by someone else at the same time (another replica, an
agent in the tree) can still hold a lock: a call that fails on one is retried with
backoff, and an ``index.lock`` of one of our trees older than the timeout, which no live
call of ours can hold, is deleted. A cancelled caller leaves git to finish in the
background rather than kill it half-way, which can leave such a lock behind; the turn it
held passes on only when that git has finished (two commits at once in one tree race on
``HEAD``, and the loser fails).

Two calls run in this process instead, by libgit2 (``index_commits``): whether a tree has
anything for ``git add -A`` to stage, and the commit of its index. They take the same
turns and threads, and no timeout: they read the tree's status and write three objects
and a ref, where a git process of the same work could be stopped half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import pygit2

from ..domain.errors import WorkspaceUnusable
from ..domain.storable_text import storable
from .git_process import GitOutput, GitTimedOut, run_git
from .index_commits import RefMoved, anything_to_add, clean_head, commit_index
from .repository_template import repository_template

T = TypeVar("T")
GIT_TIMEOUT_SECONDS = 120.0
# Git processes of this process at a time: the step workers' checkpoints, workspace
# writes and diffs side by side; more wait for a thread.
_GIT_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="git")
AUTHOR_NAME = "Industrial Orchestrator"
AUTHOR_EMAIL = "orchestrator@localhost"

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
BUSY = re.compile(r"\.lock'?: File exists|could not lock config file|failed to read .*worktrees/")
"""Another git process is changing the repository: it holds a lock (the index, a ref, the
config), or it is half-way through registering a worktree that this one reads."""
_LOCK_FILE = re.compile(r"Unable to create '([^']+\.lock)': File exists")
LOCK_ATTEMPTS = 10
_LOCK_BACKOFF_SECONDS = 0.05
_LOCK_BACKOFF_MAX_SECONDS = 1.0
_STDERR_SHOWN = 2000
_COMMIT = re.compile(r"[0-9a-fA-F]{4,64}")
# The git calls started under each turn (``GitCommands.lock``) the caller holds.
_TURNS: ContextVar[tuple[list[asyncio.Future[Any]], ...]] = ContextVar("git_turns", default=())


class WorkspaceError(WorkspaceUnusable):
    """A session's working tree could not be prepared, committed, restored or read."""


class GitCommands:
    """Git run in the trees under ``home / "worktrees"`` (and in the repositories they
    come from), with the locks that make calls on one tree take turns."""

    def __init__(self, home: Path, *, timeout: float = GIT_TIMEOUT_SECONDS) -> None:
        self.home = home.resolve()
        self.trees = self.home / "worktrees"
        self.timeout = timeout
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """One holder at a time per tree and per source repository, in this process.

        A holder cancelled while its git runs gives the turn up only when that git ends."""
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        await lock.acquire()
        started: list[asyncio.Future[Any]] = []
        turns = _TURNS.set((*_TURNS.get(), started))
        try:
            yield
        finally:
            _TURNS.reset(turns)
            running = [call for call in started if not call.done()]
            if running:
                ended = asyncio.gather(*running, return_exceptions=True)
                ended.add_done_callback(lambda _: lock.release())
            else:
                lock.release()

    def owned(self, path: Path) -> Path:
        """``path`` as one of our trees; anything else is refused (``restore`` deletes files)."""
        resolved = path.resolve()
        if resolved.parent != self.trees or not resolved.is_dir():
            raise WorkspaceError(
                f"{path} is not a working tree of this orchestrator", {"path": str(path)}
            )
        return resolved

    async def commit_sha(self, cwd: Path, commit: str) -> str:
        """The full id of ``commit`` (a commit id, its prefix, ``HEAD`` or a branch ref)."""
        if (
            commit != "HEAD"
            and not commit.startswith("refs/heads/")
            and not _COMMIT.fullmatch(commit)
        ):
            raise WorkspaceError(f"{commit[:80]!r} is not a commit id", {"commit": commit[:80]})
        output = await self.run(
            cwd, "rev-parse", "-q", "--verify", f"{commit}^{{commit}}", check=False
        )
        if output.returncode != 0:
            raise WorkspaceError(
                f"commit {commit} is not in the repository at {cwd}",
                {"commit": commit, "path": str(cwd)},
            )
        return output.stdout.decode().strip()

    async def init(self, cwd: Path, branch: str) -> None:
        """A new repository in the directory ``cwd``, its first commit to go on ``branch``.
        Made by libgit2 in this process: ``git init`` is a process of its own, twice the
        CPU (about 10 against 5 ms, measured on this project's 2-core machine), and every
        session without a repository of its own starts with one. Made from the home's
        template (``repository_template``): its config copied, not written four times."""
        home = self.home

        def made() -> None:
            # The template looked up each time (a stat): one removed is made again.
            template = str(repository_template(home))
            pygit2.init_repository(cwd, initial_head=branch, template_path=template)

        try:
            await _in_thread(made)
        except (pygit2.GitError, OSError, ValueError) as exc:
            raise WorkspaceError(
                f"git init failed in {cwd}: {storable(str(exc))[:_STDERR_SHOWN]}",
                {"path": str(cwd)},
            ) from exc

    async def anything_to_add(self, cwd: Path) -> bool:
        """Whether ``git add -A`` could change ``cwd``'s index (``index_commits``)."""
        return await _in_thread(functools.partial(anything_to_add, cwd))

    async def clean_head(self, cwd: Path) -> str | None:
        """HEAD's commit if ``cwd`` holds nothing to commit (``index_commits``)."""
        return await _in_thread(functools.partial(clean_head, cwd))

    async def commit_index(self, cwd: Path, message: str) -> str:
        """Commit what ``cwd``'s index holds onto its HEAD (``index_commits``), even
        nothing, with the orchestrator's author; the new commit's id. A branch another
        git holds or moved meanwhile is tried again after a pause, as a git call that
        meets a lock is (``run``)."""
        commit = functools.partial(commit_index, cwd, message, name=AUTHOR_NAME, email=AUTHOR_EMAIL)
        for attempt in range(LOCK_ATTEMPTS):
            try:
                return await _in_thread(commit)
            except RefMoved as exc:
                if attempt == LOCK_ATTEMPTS - 1:
                    raise WorkspaceError(
                        f"the commit in {cwd} kept meeting another git: {exc}",
                        {"path": str(cwd)},
                    ) from exc
            except (pygit2.GitError, OSError, ValueError) as exc:
                raise WorkspaceError(
                    f"the commit in {cwd} failed: {storable(str(exc))[:_STDERR_SHOWN]}",
                    {"path": str(cwd)},
                ) from exc
            await back_off(attempt)
        raise AssertionError("unreachable")

    async def run(
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
        for attempt in range(LOCK_ATTEMPTS):
            output = await self._run(cwd, args, env, max_output)
            if output.returncode == 0 or output.truncated:
                return output
            if not (retry and BUSY.search(output.stderr)) or attempt == LOCK_ATTEMPTS - 1:
                break
            if not await self._cleared_stale_index_lock(cwd, output.stderr):
                await back_off(attempt)
        if check:
            raise failed(cwd, args, output)
        return output

    async def _cleared_stale_index_lock(self, cwd: Path, stderr: str) -> bool:
        """Delete the ``index.lock`` of one of our trees if no live git can be holding it.

        Each of our git calls ends within the timeout, so a lock older than that was left
        by a git that died (killed, or the machine went down); without this, every later
        commit in the tree would fail on it.
        """
        match = _LOCK_FILE.search(stderr)
        if match is None or cwd.parent != self.trees:
            return False
        lock = Path(match.group(1))
        found = await self.run(cwd, "rev-parse", "--absolute-git-dir", check=False, retry=False)
        git_dir = Path(os.fsdecode(found.stdout.rstrip(b"\n")))
        if found.returncode != 0 or lock != git_dir / "index.lock":
            return False
        try:
            modified = (await asyncio.to_thread(lock.stat)).st_mtime
        except FileNotFoundError:
            return True
        if time.time() - modified < self.timeout:
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
        try:
            return await _in_thread(
                functools.partial(
                    run_git,
                    command,
                    self._environment(env),
                    timeout=self.timeout,
                    max_output=max_output,
                )
            )
        except FileNotFoundError as exc:
            raise WorkspaceError("git is not installed (no 'git' on PATH)") from exc
        except GitTimedOut:
            raise WorkspaceError(
                f"git {args[0]} in {cwd} did not finish within {self.timeout:g} s",
                {"command": _shown_command(args), "path": str(cwd)},
            ) from None

    def _environment(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        environment.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_OPTIONAL_LOCKS="0",
            GIT_CEILING_DIRECTORIES=str(self.trees),
            LC_ALL="C",
        )
        environment.update(extra or {})
        return environment


async def _in_thread(call: Callable[[], T]) -> T:
    """``call`` in a git thread, counted in the caller's turns (``GitCommands.lock``).
    A caller that gives up does not stop it: it finishes in its thread."""
    running = asyncio.get_running_loop().run_in_executor(_GIT_THREADS, call)
    # A caller cancelled meanwhile leaves the outcome to nobody: look at it here, so
    # that an error is not reported as never retrieved.
    running.add_done_callback(lambda done: done.cancelled() or done.exception())
    for started in _TURNS.get():
        started.append(running)
    return await asyncio.shield(running)


async def back_off(attempt: int) -> None:
    """Sleep before retrying, longer each time, jittered so racing replicas fall out of step."""
    delay = min(_LOCK_BACKOFF_MAX_SECONDS, _LOCK_BACKOFF_SECONDS * 2**attempt)
    await asyncio.sleep(delay * (0.5 + random.random()))


def failed(cwd: Path, args: list[str] | tuple[str, ...], output: GitOutput) -> WorkspaceError:
    """The error for a git call that failed, with (the end of) what git said."""
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


def shown(raw: bytes) -> str:
    """Git's output about a tree (file names, diff text) as text anyone can be served and
    any database can keep: an agent's shell can name a file with bytes that are not UTF-8
    (and write a NUL past where git looks for one to call a file binary). Each such byte
    becomes U+FFFD, by the rule the rest of an agent's output follows
    (``domain.storable_text``); git's own C-style quoting would instead show every
    non-ASCII name escaped, and ``-z`` output is never quoted."""
    return storable(raw.decode("utf-8", "replace"))
