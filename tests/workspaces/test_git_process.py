"""The git process runner (``workspaces/git_process.py``), with plain commands standing in for
git: both pipes read to the end, output cut where asked, a process that overruns its
timeout stopped with its whole group (SIGKILL when it ignores SIGTERM)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from industrial_orchestrator.workspaces.git_process import (
    STDERR_KEPT,
    STOP_GRACE_SECONDS,
    GitTimedOut,
    run_git,
)

ENV = {"PATH": os.environ["PATH"], "LC_ALL": "C"}


def test_both_pipes_are_read_to_the_end_and_stderr_keeps_its_head() -> None:
    # A megabyte on each pipe: far more than a pipe holds, so reading one pipe to its
    # end before the other would leave the process blocked forever.
    script = "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero | tr '\\0' e >&2; exit 3"
    output = run_git(["sh", "-c", script], ENV, timeout=30)
    assert output.returncode == 3
    assert output.stdout == b"\0" * 1048576
    assert output.stderr == "e" * STDERR_KEPT
    assert not output.truncated


def test_output_past_the_limit_is_cut_and_the_process_stopped() -> None:
    started = time.monotonic()
    output = run_git(["yes"], ENV, timeout=30, max_output=100_000)
    assert output.truncated
    assert output.stdout == b"y\n" * 50_000
    assert time.monotonic() - started < 10  # stopped, not left to its timeout


def test_a_process_that_overruns_is_stopped_with_its_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    started = time.monotonic()
    with pytest.raises(GitTimedOut):
        run_git(["sh", "-c", script], ENV, timeout=0.5)
    assert time.monotonic() - started < 0.5 + STOP_GRACE_SECONDS
    child = int(pid_file.read_text())
    assert not _alive(child)  # what it started went with it


def test_a_process_deaf_to_sigterm_is_killed_after_the_grace() -> None:
    started = time.monotonic()
    with pytest.raises(GitTimedOut):
        run_git(["sh", "-c", "trap '' TERM; sleep 60"], ENV, timeout=0.3)
    took = time.monotonic() - started
    assert 0.3 + STOP_GRACE_SECONDS <= took < 0.3 + STOP_GRACE_SECONDS + 5


def test_a_missing_program_is_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        run_git(["no-such-git-here"], ENV, timeout=5)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
