"""One git process, run to its end in a worker thread: its output (the head of it, when
asked), bounded by a timeout, with its whole process group stopped when it overruns.

Why a thread and not the event loop's subprocess support: under uvloop (what uvicorn
runs) a child is started with ``fork()``, which copies the page tables of the whole
server, about 9 ms of CPU per git process in a 300 MB process (measured), three of them
per checkpoint. ``subprocess.Popen`` starts it with ``vfork()``, under 1 ms whatever the
server's size, and a thread lets the loop go on meanwhile. A caller that stops waiting
does not stop git either: git killed half-way can leave its ``index.lock`` behind, so it
finishes in its thread (within the timeout).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STOP_GRACE_SECONDS = 2.0
"""After SIGTERM (on which git deletes its lock files), how long before SIGKILL."""
STDERR_KEPT = 64 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class GitOutput:
    returncode: int
    stdout: bytes
    stderr: str
    truncated: bool
    """``stdout`` was cut at the ``max_output`` asked for (git was stopped there)."""


class GitTimedOut(Exception):
    """Git did not finish within its timeout; it was stopped."""


def run_git(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float,
    max_output: int | None = None,
) -> GitOutput:
    """Run ``command`` (blocking: call it from a worker thread) and read both its pipes to
    the end, so git never blocks on a full one. Raises ``GitTimedOut`` when it outlived
    ``timeout``, ``FileNotFoundError`` when there is no git."""
    with subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        # Its own group: a timeout stops git and whatever it started (a filter, `gc`).
        start_new_session=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        stdout, stderr = bytearray(), bytearray()
        truncated = timed_out = killed = False
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ, stdout)
            selector.register(process.stderr, selectors.EVENT_READ, stderr)
            while selector.get_map():
                left = None if killed else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if timed_out:
                        _signal(process.pid, signal.SIGKILL)
                        killed = True
                    else:
                        _signal(process.pid, signal.SIGTERM)
                        timed_out = True
                        deadline = time.monotonic() + STOP_GRACE_SECONDS
                    continue
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, _CHUNK)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.data is stderr:
                        stderr += chunk[: max(0, STDERR_KEPT - len(stderr))]
                    elif truncated:
                        pass  # read away: git was asked to stop
                    elif max_output is not None and len(stdout) + len(chunk) > max_output:
                        stdout += chunk[: max_output - len(stdout)]
                        truncated = True
                        _signal(process.pid, signal.SIGTERM)
                    else:
                        stdout += chunk
        try:
            # Its pipes are closed; it ends now, unless it closed them itself early.
            returncode = process.wait(None if killed else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(process.pid, signal.SIGKILL)
            timed_out = True
            returncode = process.wait()
    if timed_out:
        raise GitTimedOut
    return GitOutput(returncode, bytes(stdout), stderr.decode("utf-8", "replace"), truncated)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        os.killpg(pid, signum)
