"""Running a task's command: through the shell, in its workspace, in a process group of
its own, the prompt on its stdin and its output read line by line into ``TaskOutput``.

It runs until it exits, the task's timeout passes, the orchestrator takes the task back
(a heartbeat's ``abort``) or the worker stops; then its whole process group is ended,
so nothing it started outlives its task. ``Ran`` says how it went.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from .console import Warn, short_id
from .output import TaskOutput
from .protocol import Json
from .usage import USAGE_FILE_NAME, read_usage
from .workspace import command_env

KILL_GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL
DRAIN_SECONDS = 1.0  # for output still in the pipes once the command is gone
STOPPED = "worker stopped"
ABORTED = "aborted: the orchestrator took the task back (paused, stopped or cancelled)"


@dataclass(frozen=True, slots=True)
class Ran:
    """How a command ended: its exit status (None when it never started), when it was
    cut short or could not start, why, and the usage it reported."""

    exit_code: int | None
    cut_short: str | None = None
    usage: Mapping[str, int | float] = field(default_factory=dict)


async def run_command(
    command: str,
    assignment: Json,
    workspace: Path,
    output: TaskOutput,
    *,
    stopping: asyncio.Event,
    aborted: asyncio.Event | None,
    warn: Warn,
) -> Ran:
    """Run ``command`` for one task until it exits, times out, is ``aborted`` or the
    worker is ``stopping``."""
    if stopping.is_set():
        return Ran(None, STOPPED)
    task_id = str(assignment["task_id"])
    # The usage file lives in a directory of the task's own (mode 0700), outside the
    # workspace, so it never ends up in the work and no other task can write it.
    with tempfile.TemporaryDirectory(
        prefix=f"orchestrator-task-{short_id(task_id)}-", ignore_cleanup_errors=True
    ) as private:
        usage_file = Path(private) / USAGE_FILE_NAME
        try:
            process = await asyncio.create_subprocess_shell(
                command,
                cwd=workspace,
                env=command_env(assignment, os.environ, usage_file),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, to end all of it
            )
        except (OSError, ValueError) as exc:
            return Ran(None, f"could not start the command: {exc}")
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        pumps = [
            asyncio.create_task(_feed(process.stdin, str(assignment.get("input_data", "")))),
            asyncio.create_task(output.pump(process.stdout, "stdout")),
            asyncio.create_task(output.pump(process.stderr, "stderr")),
        ]
        limit = assignment.get("timeout_seconds") or None
        try:
            cut_short = await _wait_for_exit(process, limit, stopping, aborted)
        finally:
            await _end_process_group(process)
            await _settle(pumps)
        usage = read_usage(usage_file)
    for problem in usage.problems:
        warn(f"task {task_id}: usage report ignored: {problem}")
    return Ran(process.returncode, cut_short, usage.fields)


async def _wait_for_exit(
    process: asyncio.subprocess.Process,
    limit: float | None,
    stopping: asyncio.Event,
    aborted: asyncio.Event | None,
) -> str | None:
    """None once the command exited; else why it must be ended."""
    exited = asyncio.ensure_future(process.wait())
    stop = asyncio.ensure_future(stopping.wait())
    abort = asyncio.ensure_future((aborted or asyncio.Event()).wait())
    try:
        done, _ = await asyncio.wait(
            {exited, stop, abort}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        exited.cancel()
        stop.cancel()
        abort.cancel()
    if exited in done:
        return None
    if abort in done:
        return ABORTED
    return STOPPED if stop in done else f"timed out after {limit:g} s"


async def _feed(stdin: asyncio.StreamWriter, prompt: str) -> None:
    """Write the prompt to the command's stdin and close it; a command that does not read
    its stdin is no failure."""
    try:
        stdin.write(prompt.encode("utf-8"))
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        stdin.close()


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _end_process_group(process: asyncio.subprocess.Process) -> None:
    """End the command: SIGTERM to its process group, SIGKILL after a grace period. Then
    SIGKILL whatever it left behind in the group, so nothing outlives its task."""
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        with suppress(TimeoutError):
            async with asyncio.timeout(KILL_GRACE_SECONDS):
                await process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


async def _settle(pumps: list[asyncio.Task[None]]) -> None:
    """Let the readers finish the output still in the pipes, then give up on them."""
    _, pending = await asyncio.wait(pumps, timeout=DRAIN_SECONDS)
    for pump in pending:
        pump.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)
