"""The worker: one registered agent whose slots pull tasks and run the command for each.

``serve`` runs it until SIGINT or SIGTERM. ``Worker.run`` registers, starts the
heartbeat, and runs ``--concurrency`` slots; each slot long-polls for a task
(``POST .../{agent_id}/tasks/next``), holds it in the heartbeats while its command runs,
and reports the result. On a stop signal the running commands are ended and reported
failed, and the agent leaves.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable
from typing import TextIO, TypeVar

import httpx
from rich.console import Console
from rich.text import Text

from ..errors import CliError, describe
from .command import ABORTED, Ran, run_command
from .console import Warn
from .heartbeat import Heartbeat
from .membership import Membership
from .output import LogShipper, TaskOutput
from .protocol import (
    EAP,
    REQUEST_TIMEOUT_SECONDS,
    RETRY_SECONDS,
    Json,
    connect,
    error_code,
    error_message,
)
from .report import print_end, result_of, send_result
from .settings import WorkerConfig
from .workspace import choose_workspace

LONG_POLL_SECONDS = 20.0

T = TypeVar("T")


async def serve(config: WorkerConfig, console: Console) -> None:
    """Run a worker for ``config`` until SIGINT or SIGTERM; its tasks' output goes to
    stdout, everything else to ``console``."""
    async with connect(config.url) as http:
        worker = Worker(config, http, console, sys.stdout)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, worker.stop, signum)
        try:
            await worker.run()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


class Worker:
    """One registered agent running ``config.command`` for the tasks it pulls."""

    def __init__(
        self, config: WorkerConfig, http: httpx.AsyncClient, console: Console, echo: TextIO
    ) -> None:
        self.config = config
        self.http = http
        self.console = console
        self.echo = echo
        self.warn = Warn(console)
        self.stopping = asyncio.Event()
        self.membership = Membership(config, http, console, self.warn, self.stopping)
        self.heartbeat = Heartbeat(self.membership, config.concurrency, self.warn)

    def stop(self, signum: int) -> None:
        """Signal handler: stop pulling, end the running commands, leave."""
        if not self.stopping.is_set():
            self.console.print(
                f"{signal.Signals(signum).name}: stopping", style="bold", markup=False
            )
            self.stopping.set()

    async def run(self) -> None:
        """Register, work until stopped, leave. A ``CliError`` when the orchestrator
        stopped accepting the agent (401)."""
        membership = self.membership
        await membership.register()
        heartbeat = asyncio.create_task(self.heartbeat.run())
        try:
            async with asyncio.TaskGroup() as slots:
                for _ in range(self.config.concurrency):
                    slots.create_task(self._slot())
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            if membership.revoked is None:
                await membership.leave()
        if membership.revoked is not None:
            raise CliError(f"the orchestrator stopped accepting this agent: {membership.revoked}")

    # -- a slot: pull, run, report, again ---------------------------------------------------------

    async def _slot(self) -> None:
        while not self.stopping.is_set():
            assignment = await self._unless_stopped(self._next_task())
            if assignment is None:
                continue
            aborted = self.heartbeat.hold(assignment["task_id"])
            try:
                await self._perform(assignment, aborted)
            finally:
                self.heartbeat.release(assignment["task_id"])
            if self.heartbeat.reported_busy and not self.stopping.is_set():
                await self.heartbeat.beat()  # "healthy" again, or the next pull is refused

    async def _unless_stopped(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None once the worker is stopping (``work`` is cancelled)."""
        job = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if job.done():
            return job.result()
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        return None

    async def _next_task(self) -> Json | None:
        """The next task assigned to this agent, or None after a long-poll that brought
        none (or failed: then after a pause, so a down server is not hammered)."""
        membership = self.membership
        sent_token = membership.token
        try:
            response = await self.http.post(
                f"{EAP}/{membership.agent_id}/tasks/next",
                params={"wait_seconds": LONG_POLL_SECONDS},
                headers=membership.auth(),
                timeout=LONG_POLL_SECONDS + REQUEST_TIMEOUT_SECONDS,
            )
        except httpx.TransportError as exc:
            self.warn(f"cannot pull tasks ({describe(exc)}); retrying")
            await asyncio.sleep(RETRY_SECONDS)
            return None
        if response.status_code == 200:
            assignment: Json = response.json()
            return assignment
        if response.status_code == 204:
            return None
        if response.status_code == 401:
            if not await membership.rejoin(response, sent_token) and not self.stopping.is_set():
                await asyncio.sleep(RETRY_SECONDS)
            return None
        if error_code(response) == "agent_not_accepting":
            # Counted busy or offline (missed beats): a beat puts it back in service.
            await self.heartbeat.beat()
        else:
            self.warn(f"pulling a task was refused: {error_message(response)}")
        await asyncio.sleep(RETRY_SECONDS)
        return None

    async def _perform(self, assignment: Json, aborted: asyncio.Event) -> None:
        """Run the command for one task and report how it ended; nothing is reported for
        a task the orchestrator took back (``aborted``): it is no longer ours."""
        task_id = str(assignment["task_id"])
        session_id = assignment.get("session_id")
        started = time.monotonic()
        logs = (
            LogShipper(
                self.http,
                f"{EAP}/{self.membership.agent_id}/tasks/{task_id}/logs",
                self.membership.auth,
                self.warn,
            )
            if session_id
            else None
        )
        output = TaskOutput(task_id, self.echo, logs)
        try:
            workspace, why = choose_workspace(
                assignment.get("context") or {}, task_id, self.config.home
            )
        except OSError as exc:
            ran = Ran(None, f"no workspace: {exc}")
        else:
            self.console.print(
                Text.assemble(
                    ("▶ ", "bold"),
                    f"task {task_id} attempt {assignment.get('attempt')} ",
                    (repr(assignment.get("title", "")), "bold"),
                    f" in {workspace} ({why})",
                )
            )
            ran = await run_command(
                self.config.command,
                assignment,
                workspace,
                output,
                stopping=self.stopping,
                aborted=aborted,
                warn=self.warn,
            )
        finally:
            if logs is not None:
                await logs.close()
        elapsed = time.monotonic() - started
        if ran.cut_short == ABORTED:
            self.console.print(
                Text.assemble(("■ ", "bold yellow"), f"task {task_id} {ABORTED}"), markup=False
            )
            return  # no longer ours: a result would be refused
        result = result_of(assignment, ran, output, elapsed)
        recorded = await send_result(self.membership, result)
        print_end(self.console, task_id, result, elapsed, recorded)
