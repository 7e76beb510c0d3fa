"""A session's verification: its ``verify_command`` run in its working tree, the output
streamed to the session's terminal as it comes, the verdict and the end of the output
handed back to the session engine (``SessionEngine.record_review``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from uuid import UUID

import structlog

from ..domain.errors import OrchestratorError
from ..domain.events import LogStream
from ..domain.storable_text import storable
from ..domain.tasks.workspaces import session_workspace
from ..services.events import EventLog
from ..services.session_engine import ReviewDue
from ..services.sessions import SessionService

log = structlog.get_logger("industrial_orchestrator.runtime.verification")

_LOG_FLUSH_SECONDS = 0.5
_LOG_FLUSH_BYTES = 64 * 1024
_OUTPUT_KEPT_CHARS = 64 * 1024


class Verifier:
    def __init__(
        self,
        sessions: SessionService,
        events: EventLog,
        *,
        timeout_seconds: float,
        artifacts_home: Path,
    ) -> None:
        self._sessions = sessions
        self._events = events
        self.timeout_seconds = timeout_seconds
        self._home = artifacts_home

    async def verify(self, due: ReviewDue) -> tuple[bool, str]:
        """Run the verification command in the workspace, its output streamed to the
        session's terminal; whether it passed, and its output (the end of it)."""
        session = await self._sessions.get(due.session_id)
        cwd = session_workspace(session, self._home)
        await asyncio.to_thread(cwd.mkdir, parents=True, exist_ok=True)
        await self.log(
            due.session_id,
            LogStream.SYSTEM,
            f"$ {due.command}   (verification round {due.review_round + 1}, in {cwd})\n",
        )
        process = await asyncio.create_subprocess_shell(
            due.command,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        output: list[str] = []
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await self._stream(due.session_id, process, output)
                code = await process.wait()
        except TimeoutError:
            _kill_group(process)
            await process.wait()
            text = "".join(output)[-_OUTPUT_KEPT_CHARS:]
            message = f"verification timed out after {self.timeout_seconds:g} s\n"
            await self.log(due.session_id, LogStream.SYSTEM, message)
            return False, text + message
        finally:
            if process.returncode is None:
                _kill_group(process)
        text = "".join(output)[-_OUTPUT_KEPT_CHARS:]
        verdict = "passed" if code == 0 else f"failed (exit {code})"
        await self.log(due.session_id, LogStream.SYSTEM, f"verification {verdict}\n")
        return code == 0, text

    async def _stream(
        self, session_id: UUID, process: asyncio.subprocess.Process, output: list[str]
    ) -> None:
        assert process.stdout is not None
        pending: list[str] = []
        size = 0
        flushed = time.monotonic()
        while True:
            line = await process.stdout.readline()
            if line:
                # The verify command's output is stored as log events and feedback:
                # undecodable bytes are already U+FFFD, a NUL becomes one too.
                text = storable(line.decode(errors="replace"))
                output.append(text)
                pending.append(text)
                size += len(line)
            if pending and (
                not line
                or size >= _LOG_FLUSH_BYTES
                or time.monotonic() - flushed >= _LOG_FLUSH_SECONDS
            ):
                await self.log(session_id, LogStream.STDOUT, "".join(pending))
                pending, size, flushed = [], 0, time.monotonic()
            if not line:
                return

    async def log(self, session_id: UUID, stream: LogStream, text: str) -> None:
        """A line in the session's terminal; lost (and said so) when the database is not
        there for it: the output is best effort, the verdict is not."""
        try:
            await self._events.append_log(session_id, stream, text)
        except OrchestratorError:
            log.warning("verify_log_lost", session_id=str(session_id))


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
