"""``orchestrator worker``: a reference external agent over the External Agent Protocol.

It plugs any command-line program into the orchestrator: for each task it pulls, it runs
``--command`` through the shell in the task's workspace and reports how it ended. It is
also the example for agent authors (docs/external-agents.md has the protocol):

1. **Register** (``POST /agents/external/register``): the answer is the agent id, an
   ``auth_token`` and the heartbeat interval the orchestrator wants.
2. **Heartbeat** from a task of its own, so long commands never delay it: every beat
   renews the leases of the tasks held and answers a fresh token, adopted at once.
   ``busy`` while every slot runs a command, ``healthy`` otherwise; ``busy`` (or
   ``offline``, after missed beats) makes the server refuse work, so a freed slot beats
   ``healthy`` again before it pulls.
3. **Pull** (``POST .../tasks/next``, a long-poll) from ``--concurrency`` slots.
4. **Run** the command: shell, workspace as working directory, prompt on stdin and in
   the environment; its output echoed, kept for the result and shipped as session logs.
   The command may report the tokens and money it spent in ``$ORCHESTRATOR_USAGE_FILE``.
5. **Report** (``POST .../tasks/{id}/result``) with the attempt number as fencing token,
   and the usage reported: 409 ``lease_lost`` means someone else owns the task now, so
   the result is dropped.
6. **Leave** (``DELETE``) on SIGINT or SIGTERM, after the running commands were killed
   and reported failed.

A token the server refuses (401: it restarted with another SECRET_KEY, or was down longer
than a token lives) is not the end: the worker registers again under its name, which
resumes the same agent, and carries on; a result in flight is sent with the new token
(the lease's attempt number decides whether it still counts). It stops only when the
agent was removed (401 ``agent_removed``) or registration itself is refused.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import math
import os
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TextIO, TypeVar
from uuid import UUID

import httpx
import typer
from rich.console import Console
from rich.text import Text

from .. import __version__
from ..domain.money import format_usd
from ..domain.task_templates import TEMPLATES
from ..domain.tasks import TaskType
from .api_client import API_PREFIX, DEFAULT_URL, base_url
from .errors import CliError, ServerUnreachable, describe, reported_errors
from .session_commands import Url

EAP = f"{API_PREFIX}/agents/external"
PROTOCOL_VERSION = "1.0"
MAX_CAPABILITIES = 64  # what registration accepts
LONG_POLL_SECONDS = 20.0
REQUEST_TIMEOUT_SECONDS = 10.0
RETRY_SECONDS = 1.0
REPORT_TRIES = 3
REPORT_PATIENCE_SECONDS = 300.0
MAX_REPORT_BACKOFF_SECONDS = 5.0
BEAT_TRIES = 3
BEAT_RETRY_SECONDS = 0.05
KILL_GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL
DRAIN_SECONDS = 1.0  # for output still in the pipes once the command is gone
READ_BYTES = 64 * 1024
LINE_MAX_CHARS = 16 * 1024  # a longer "line" is passed on in pieces
LOG_FLUSH_SECONDS = 0.5
LOG_FLUSH_CHARS = 64 * 1024
LOG_REQUEST_CHARS = 32 * 1024  # at most 128 KiB of UTF-8: well under the server's 256 KiB
LOG_TIMEOUT_SECONDS = 5.0
ERROR_TAIL_CHARS = 2_000
SUMMARY_CHARS = 500
USAGE_FILE_NAME = "usage.json"
USAGE_FILE_MAX_BYTES = 64 * 1024
# What the server accepts in a result (TaskResultIn): a larger value would get the whole
# result refused, so it is dropped with a warning instead.
MAX_TOKENS_USED = 1_000_000_000
MAX_COST_USD = 1_000_000.0
STOPPED = "worker stopped"
ABORTED = "aborted: the orchestrator took the task back (paused, stopped or cancelled)"

Json = dict[str, Any]
T = TypeVar("T")


# -- pure helpers ----------------------------------------------------------------------------


def known_capabilities() -> set[str]:
    """Every capability a task can require that this worker can know of: those of the
    planning templates and the task types."""
    from_templates = {c for t in TEMPLATES.values() for step in t.steps for c in step.capabilities}
    return from_templates | {task_type.value for task_type in TaskType}


def capabilities_for(given: Iterable[str], any_capability: bool) -> tuple[str, ...]:
    """The capabilities to register: ``given``, plus every known one with ``any_capability``.

    Raises ``typer.BadParameter`` (exit 2) when there are none, or more than registration
    accepts.
    """
    capabilities = {name.strip().lower() for name in given if name.strip()}
    if any_capability:
        capabilities |= known_capabilities()
    if not capabilities:
        raise typer.BadParameter(
            "give at least one --capability CAP (repeatable), or --any-capability to take "
            "every task",
            param_hint="--capability",
        )
    if len(capabilities) > MAX_CAPABILITIES:
        raise typer.BadParameter(
            f"{len(capabilities)} capabilities; an agent registers at most {MAX_CAPABILITIES}",
            param_hint="--capability",
        )
    return tuple(sorted(capabilities))


def choose_workspace(context: Mapping[str, Any], task_id: str, home: Path) -> tuple[Path, str]:
    """The directory a task's command runs in, and why that one.

    The assignment's ``context["workspace"]`` when it is a directory on this machine, else
    ``<home>/worker/<task_id>`` (created).
    """
    given = context.get("workspace")
    if isinstance(given, str) and given:
        if Path(given).is_dir():
            return Path(given), "the task's workspace"
        reason = f"the task's workspace {given} is not a directory here"
    else:
        reason = "the task names no workspace"
    path = home / "worker" / str(UUID(task_id))  # a UUID: nothing else reaches the path
    path.mkdir(parents=True, exist_ok=True)
    return path, f"a worker directory: {reason}"


def command_env(
    assignment: Mapping[str, Any], base: Mapping[str, str], usage_file: Path
) -> dict[str, str]:
    """The command's environment: the worker's, less its registration secret, plus the
    task's ``ORCHESTRATOR_TASK_*``, ``ORCHESTRATOR_SESSION_ID`` and the
    ``ORCHESTRATOR_USAGE_FILE`` it may report its usage in."""
    env = {key: value for key, value in base.items() if key != "AGENT_REGISTRATION_TOKEN"}
    env.update(
        ORCHESTRATOR_TASK_ID=str(assignment["task_id"]),
        ORCHESTRATOR_SESSION_ID=str(assignment.get("session_id") or ""),
        ORCHESTRATOR_TASK_TYPE=str(assignment.get("task_type", "")),
        ORCHESTRATOR_TASK_TITLE=_env_safe(str(assignment.get("title", ""))),
        ORCHESTRATOR_TASK_ATTEMPT=str(assignment.get("attempt", "")),
        ORCHESTRATOR_TASK_PROMPT=_env_safe(str(assignment.get("input_data", ""))),
        ORCHESTRATOR_USAGE_FILE=str(usage_file),
    )
    return env


@dataclass(frozen=True, slots=True)
class Usage:
    """What a command reported it spent, for the result; ``problems`` are what was wrong
    with the report (each a warning, never a failure of the task)."""

    fields: dict[str, int | float]
    problems: tuple[str, ...] = ()


def read_usage(path: Path) -> Usage:
    """The usage a command wrote to ``path`` (its ``ORCHESTRATOR_USAGE_FILE``): a JSON
    object with ``tokens_used`` (an integer >= 0) and/or ``cost_usd`` (a number >= 0);
    other keys are ignored. No file is no usage, and no problem."""
    try:
        # Non-blocking and no symlinks: a FIFO or a link planted there cannot hang the
        # worker or make it read another file.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return Usage({})
    except OSError as exc:
        return Usage({}, (f"cannot read it: {exc.strerror or exc}",))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Usage({}, ("not a regular file",))
        raw = os.read(fd, USAGE_FILE_MAX_BYTES + 1)
    except OSError as exc:
        return Usage({}, (f"cannot read it: {exc.strerror or exc}",))
    finally:
        os.close(fd)
    if len(raw) > USAGE_FILE_MAX_BYTES:
        return Usage({}, (f"larger than {USAGE_FILE_MAX_BYTES} bytes",))
    try:
        report = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return Usage({}, (f"not JSON: {exc}",))
    if not isinstance(report, dict):
        return Usage({}, (f"a JSON {type(report).__name__}, not an object",))
    if "tokens_used" not in report and "cost_usd" not in report:
        return Usage({}, ("holds neither tokens_used nor cost_usd",))
    fields: dict[str, int | float] = {}
    problems: list[str] = []
    if "tokens_used" in report:
        tokens = report["tokens_used"]
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0:
            if tokens <= MAX_TOKENS_USED:
                fields["tokens_used"] = tokens
            else:
                problems.append(f"tokens_used {tokens} is over {MAX_TOKENS_USED}")
        else:
            problems.append(f"tokens_used {tokens!r} is not an integer >= 0")
    if "cost_usd" in report:
        cost = report["cost_usd"]
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            if math.isfinite(cost) and cost <= MAX_COST_USD:
                fields["cost_usd"] = float(cost)
            else:
                problems.append(f"cost_usd {cost} is over {MAX_COST_USD:g}")
        else:
            problems.append(f"cost_usd {cost!r} is not a number >= 0")
    return Usage(fields, tuple(problems))


def _env_safe(text: str) -> str:
    return text.replace("\0", "")  # an environment string cannot hold NUL


def _short(task_id: str) -> str:
    return task_id[:8]


def _error_code(response: httpx.Response) -> str | None:
    body = _body(response)
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _error_message(response: httpx.Response) -> str:
    """The server's ``message``, else the status line."""
    body = _body(response)
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str):
        return message
    return f"HTTP {response.status_code} {response.reason_phrase}"


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# -- a task's output ---------------------------------------------------------------------------


class LogShipper:
    """Ships a task's output to its session's terminal through the EAP
    (``POST .../{agent_id}/tasks/{task_id}/logs``), in batches: every
    ``LOG_FLUSH_SECONDS``, or sooner past ``LOG_FLUSH_CHARS``.

    Best effort: the logs are for people watching, so a failed post is reported once
    and never fails the task.
    """

    def __init__(
        self, http: httpx.AsyncClient, url: str, auth: Callable[[], dict[str, str]], warn: Warn
    ) -> None:
        self._http = http
        self._url = url
        self._auth = auth
        self._warn = warn
        self._chunks: list[tuple[str, str]] = []  # (stream, text), in order
        self._pending_chars = 0
        self._warned = False
        self._closing = False
        self._wake = asyncio.Event()
        self._sender = asyncio.create_task(self._send_batches())

    def add(self, stream: str, text: str) -> None:
        last = self._chunks[-1] if self._chunks else None
        if last and last[0] == stream and len(last[1]) + len(text) <= LOG_REQUEST_CHARS:
            self._chunks[-1] = (stream, last[1] + text)
        else:
            self._chunks.append((stream, text))
        self._pending_chars += len(text)
        if self._pending_chars >= LOG_FLUSH_CHARS:
            self._wake.set()

    async def close(self) -> None:
        """Send what is left, then stop."""
        self._closing = True
        self._wake.set()
        await self._sender

    async def _send_batches(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), LOG_FLUSH_SECONDS)
            self._wake.clear()
            chunks, self._chunks, self._pending_chars = self._chunks, [], 0
            for stream, text in chunks:
                await self._post(stream, text)
            if self._closing and not self._chunks:
                return

    async def _post(self, stream: str, text: str) -> None:
        try:
            response = await self._http.post(
                self._url,
                json={"stream": stream, "text": text},
                headers=self._auth(),
                timeout=LOG_TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as exc:
            failure = describe(exc)
        else:
            if not response.is_error:
                return
            failure = _error_message(response)
        if not self._warned:
            self._warned = True
            self._warn(f"session logs not stored ({failure}); the task goes on")


class TaskOutput:
    """A command's output, line by line: echoed on ``echo`` with the task's short id, its
    tail and last non-empty line kept for the result, and shipped to the session's logs."""

    def __init__(self, task_id: str, echo: TextIO, logs: LogShipper | None) -> None:
        self._prefix = f"[{_short(task_id)}] "
        self._echo = echo
        self._logs = logs
        self.tail = ""
        self.last_line = ""

    def line(self, stream: str, text: str) -> None:
        self._echo.write(self._prefix + text.rstrip("\n") + "\n")
        self._echo.flush()
        self.tail = (self.tail + text)[-ERROR_TAIL_CHARS:]
        if text.strip():
            self.last_line = text.strip()
        if self._logs is not None:
            self._logs.add(stream, text)

    @property
    def summary(self) -> str:
        return self.last_line[:SUMMARY_CHARS]

    async def pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        """Read ``reader`` to its end, passing on each line as it completes."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while chunk := await reader.read(READ_BYTES):
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                self.line(stream, line + "\n")
            while len(pending) >= LINE_MAX_CHARS:
                self.line(stream, pending[:LINE_MAX_CHARS])
                pending = pending[LINE_MAX_CHARS:]
        pending += decoder.decode(b"", final=True)
        if pending:
            self.line(stream, pending)


# -- the command's process ------------------------------------------------------------------------


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
            await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


async def _settle(pumps: list[asyncio.Task[None]]) -> None:
    """Let the readers finish the output still in the pipes, then give up on them."""
    _, pending = await asyncio.wait(pumps, timeout=DRAIN_SECONDS)
    for pump in pending:
        pump.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Ran:
    """How a command ended: its exit status (None when it never started), when it was
    cut short or could not start, why, and the usage it reported."""

    exit_code: int | None
    cut_short: str | None = None
    usage: Mapping[str, int | float] = field(default_factory=dict)


# -- the agent ----------------------------------------------------------------------------------


class Warn:
    """Prints a yellow ``warning:`` line on the worker's console."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def __call__(self, message: str) -> None:
        self._console.print(f"warning: {message}", style="yellow", markup=False)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    url: str
    name: str
    command: str
    capabilities: tuple[str, ...]
    any_capability: bool
    agent_type: str
    concurrency: int
    registration_token: str | None
    home: Path


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
        self.agent_id = ""
        self.token = ""
        self.heartbeat_seconds = 30.0
        self.working_on: set[str] = set()
        # Set when the orchestrator says a task is no longer ours (heartbeat `abort`).
        self.aborted: dict[str, asyncio.Event] = {}
        self.reported_busy = False
        self.revoked: str | None = None
        self.stopping = asyncio.Event()
        self._beat_lock = asyncio.Lock()
        self._register_lock = asyncio.Lock()

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
        await self.register()
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            async with asyncio.TaskGroup() as slots:
                for _ in range(self.config.concurrency):
                    slots.create_task(self._slot())
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            if self.revoked is None:
                await self.leave()
        if self.revoked is not None:
            raise CliError(f"the orchestrator stopped accepting this agent: {self.revoked}")

    # -- 1. register, 6. leave --------------------------------------------------------------

    async def register(self) -> None:
        response = await self._post_registration()
        if response.status_code != 201:
            raise CliError(f"registration refused: {_error_message(response)}")
        self._adopt(response.json())
        config = self.config
        if config.any_capability:
            taking = f"any task ({len(config.capabilities)} capabilities)"
        else:
            taking = "tasks needing " + ", ".join(config.capabilities)
        slots = "1 slot" if config.concurrency == 1 else f"{config.concurrency} slots"
        self.console.print(
            Text.assemble(
                ("worker ", "bold"),
                (config.name, "bold cyan"),
                f" is agent {self.agent_id} on {config.url}: {taking}, {slots}, "
                f"running: {config.command}",
            )
        )

    async def _post_registration(self) -> httpx.Response:
        config = self.config
        body = {
            "protocol_version": PROTOCOL_VERSION,
            "name": config.name,
            "version": __version__,
            "agent_type": config.agent_type,
            "capabilities": list(config.capabilities),
            "max_concurrent_tasks": config.concurrency,
            "metadata": {"worker": "orchestrator worker", "host": socket.gethostname()},
        }
        headers = {}
        if config.registration_token:
            headers["Authorization"] = f"Bearer {config.registration_token}"
        try:
            return await self.http.post(f"{EAP}/register", json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ServerUnreachable(config.url, describe(exc)) from None

    def _adopt(self, registered: Json) -> None:
        self.agent_id = str(registered["agent_id"])
        self.token = registered["auth_token"]
        self.heartbeat_seconds = float(registered["heartbeat_interval_seconds"])

    async def _rejoin(self, refused: httpx.Response, sent_token: str) -> bool:
        """After a 401 to a request sent with ``sent_token``: register again (once, however
        many requests were refused together). True when a new token is in place, so the
        request should be sent again; False when the worker is stopping (the agent was
        removed, or registration was refused) or the server could not be reached (the
        caller retries later, as after any unanswered request)."""
        if _error_code(refused) == "agent_removed":
            self._revoke(refused)
            return False
        async with self._register_lock:
            if self.revoked is not None:
                return False
            if self.token != sent_token:
                return True  # another request has registered again meanwhile
            try:
                response = await self._post_registration()
            except ServerUnreachable as exc:
                self.warn(f"token refused; registering again failed: {exc}")
                return False
            if response.status_code != 201:
                self.revoked = f"registration refused: {_error_message(response)}"
                self.stopping.set()
                return False
            before = self.agent_id
            self._adopt(response.json())
        same = "the same agent" if self.agent_id == before else "a new agent"
        self.console.print(
            f"token refused ({_error_message(refused)}): registered again, {same} {self.agent_id}",
            style="yellow",
            markup=False,
        )
        return True

    async def leave(self) -> None:
        try:
            response = await self.http.delete(f"{EAP}/{self.agent_id}", headers=self._auth())
        except httpx.TransportError as exc:
            self.warn(
                f"could not deregister ({describe(exc)}); the orchestrator will mark "
                "the agent offline once its heartbeats stop"
            )
            return
        if response.is_error:
            self.warn(f"could not deregister: {_error_message(response)}")
        else:
            self.console.print(f"agent {self.agent_id} deregistered", markup=False)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Agent-ID": self.agent_id}

    def _revoke(self, response: httpx.Response) -> None:
        if self.revoked is None:
            self.revoked = _error_message(response)
            self.stopping.set()

    # -- 2. heartbeat ---------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self._beat()

    async def _beat(self) -> None:
        """One heartbeat (retried on a concurrent change of the agent's record); adopts
        the fresh token and interval. Failures are reported; the next beat tries again."""
        async with self._beat_lock:
            running = len(self.working_on)
            status = "busy" if running >= self.config.concurrency else "healthy"
            body = {
                "status": status,
                "current_load": running / self.config.concurrency,
                "tasks_in_progress": running,
                "timestamp": datetime.now(UTC).isoformat(),
                # Only these leases are renewed: one this worker lost track of (a
                # long-poll answered as it gave up) runs out and goes back to the queue.
                "task_ids": sorted(self.working_on),
            }
            for _ in range(BEAT_TRIES):
                sent_token = self.token
                try:
                    response = await self.http.post(
                        f"{EAP}/{self.agent_id}/heartbeat", json=body, headers=self._auth()
                    )
                except httpx.TransportError as exc:
                    self.warn(f"heartbeat failed: {describe(exc)}")
                    return
                if response.status_code == 200:
                    ack = response.json()
                    self.token = ack["auth_token"]
                    self.heartbeat_seconds = float(ack["heartbeat_interval_seconds"])
                    for task_id in ack.get("abort", []):
                        if (aborted := self.aborted.get(str(task_id))) is not None:
                            aborted.set()
                    self.reported_busy = status == "busy"
                    return
                if response.status_code == 401:
                    if await self._rejoin(response, sent_token):
                        continue
                    return
                if response.status_code != 409:
                    break
                # A result of ours changed the agent's record meanwhile: beat again.
                await asyncio.sleep(BEAT_RETRY_SECONDS)
            self.warn(f"heartbeat refused: {_error_message(response)}")

    # -- 3. pull ---------------------------------------------------------------------------------

    async def _slot(self) -> None:
        while not self.stopping.is_set():
            assignment = await self._unless_stopped(self._next_task())
            if assignment is None:
                continue
            self.working_on.add(assignment["task_id"])
            self.aborted[assignment["task_id"]] = asyncio.Event()
            try:
                await self._perform(assignment)
            finally:
                self.working_on.discard(assignment["task_id"])
                self.aborted.pop(assignment["task_id"], None)
            if self.reported_busy and not self.stopping.is_set():
                await self._beat()  # "healthy" again, or the server refuses the next pull

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
        sent_token = self.token
        try:
            response = await self.http.post(
                f"{EAP}/{self.agent_id}/tasks/next",
                params={"wait_seconds": LONG_POLL_SECONDS},
                headers=self._auth(),
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
            if not await self._rejoin(response, sent_token) and not self.stopping.is_set():
                await asyncio.sleep(RETRY_SECONDS)
            return None
        if _error_code(response) == "agent_not_accepting":
            # Counted busy or offline (missed beats): a beat puts it back in service.
            await self._beat()
        else:
            self.warn(f"pulling a task was refused: {_error_message(response)}")
        await asyncio.sleep(RETRY_SECONDS)
        return None

    # -- 4. run, 5. report ---------------------------------------------------------------------

    async def _perform(self, assignment: Json) -> None:
        task_id = str(assignment["task_id"])
        session_id = assignment.get("session_id")
        started = time.monotonic()
        logs = (
            LogShipper(
                self.http, f"{EAP}/{self.agent_id}/tasks/{task_id}/logs", self._auth, self.warn
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
            ran = await self._execute(assignment, workspace, output)
        finally:
            if logs is not None:
                await logs.close()
        elapsed = time.monotonic() - started
        if ran.cut_short == ABORTED:
            self.console.print(
                Text.assemble(("■ ", "bold yellow"), f"task {task_id} {ABORTED}"), markup=False
            )
            return  # no longer ours: a result would be refused
        result = _result(assignment, ran, output, elapsed)
        recorded = await self._report(result)
        self._print_end(task_id, result, elapsed, recorded)

    async def _execute(self, assignment: Json, workspace: Path, output: TaskOutput) -> Ran:
        """Run the command for one task until it exits, times out or the worker stops."""
        if self.stopping.is_set():
            return Ran(None, STOPPED)
        task_id = str(assignment["task_id"])
        # The usage file lives in a directory of the task's own (mode 0700), outside the
        # workspace, so it never ends up in the work and no other task can write it.
        with tempfile.TemporaryDirectory(
            prefix=f"orchestrator-task-{_short(task_id)}-", ignore_cleanup_errors=True
        ) as private:
            usage_file = Path(private) / USAGE_FILE_NAME
            try:
                process = await asyncio.create_subprocess_shell(
                    self.config.command,
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
                cut_short = await self._wait_for_exit(process, limit, self.aborted.get(task_id))
            finally:
                await _end_process_group(process)
                await _settle(pumps)
            usage = read_usage(usage_file)
        for problem in usage.problems:
            self.warn(f"task {task_id}: usage report ignored: {problem}")
        return Ran(process.returncode, cut_short, usage.fields)

    async def _wait_for_exit(
        self,
        process: asyncio.subprocess.Process,
        limit: float | None,
        aborted: asyncio.Event | None = None,
    ) -> str | None:
        """None once the command exited; else why it must be ended."""
        exited = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(self.stopping.wait())
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

    async def _report(self, result: Json) -> str | None:
        """Send the result; None once recorded, else what became of it. While the
        orchestrator cannot be reached or answers 5xx (a restart), the result is sent
        again for up to ``REPORT_PATIENCE_SECONDS``: the task stays in the heartbeats
        meanwhile, so its lease holds. A refusal is tried ``REPORT_TRIES`` times."""
        url = f"{EAP}/{self.agent_id}/tasks/{result['task_id']}/result"
        failure = "not sent"
        refusals = 0
        give_up_at = time.monotonic() + REPORT_PATIENCE_SECONDS
        trial = 0
        while True:
            trial += 1
            if self.revoked is not None:
                return f"not recorded: {self.revoked}"
            sent_token = self.token
            try:
                response = await self.http.post(url, json=result, headers=self._auth())
            except httpx.TransportError as exc:
                # If the first try did land, a retry is refused as lease_lost: harmless.
                failure = describe(exc)
            else:
                if not response.is_error:
                    return None
                if _error_code(response) == "lease_lost":
                    return "lease lost: another agent owns the task now, result dropped"
                failure = _error_message(response)
                if response.status_code < 500:
                    refusals += 1
                    if response.status_code == 401 and await self._rejoin(response, sent_token):
                        if refusals < REPORT_TRIES:
                            continue
                    elif response.status_code not in (401, 409):
                        break
            if refusals >= REPORT_TRIES or time.monotonic() >= give_up_at:
                break
            if self.stopping.is_set() and trial >= REPORT_TRIES:
                break  # asked to stop: no waiting for a server that may not come back
            await asyncio.sleep(min(trial * RETRY_SECONDS, MAX_REPORT_BACKOFF_SECONDS))
        return f"result not recorded: {failure}"

    def _print_end(self, task_id: str, result: Json, elapsed: float, recorded: str | None) -> None:
        completed = result["status"] == "completed"
        exit_code = result["output_data"]["exit_code"]
        detail = result["output_data"]["summary"] if completed else result["error"]
        first_line = detail.strip().splitlines()[-1] if detail.strip() else ""
        line = Text.assemble(
            ("✔ " if completed else "✘ ", "bold green" if completed else "bold red"),
            f"task {task_id} {result['status']} in {elapsed:.1f} s (exit {exit_code})",
        )
        if first_line:
            line.append(f": {first_line[:SUMMARY_CHARS]}")
        if "tokens_used" in result or "cost_usd" in result:
            spent = [f"{result['tokens_used']} tokens"] if "tokens_used" in result else []
            if "cost_usd" in result:
                spent.append(format_usd(float(result["cost_usd"])))
            line.append(f" [{', '.join(spent)}]")
        if recorded is not None:
            line.append(f" - {recorded}", style="yellow")
        self.console.print(line)


def _result(assignment: Json, ran: Ran, output: TaskOutput, elapsed: float) -> Json:
    """The Task Result: completed on exit status 0, else failed with the reason."""
    completed = ran.cut_short is None and ran.exit_code == 0
    result: Json = {
        "task_id": str(assignment["task_id"]),
        "attempt": assignment["attempt"],
        "status": "completed" if completed else "failed",
        "output_data": {"exit_code": ran.exit_code, "summary": output.summary},
        "execution_time_ms": int(elapsed * 1000),
        **ran.usage,
    }
    if not completed:
        tail = output.tail.strip()
        result["error"] = (
            ran.cut_short or tail or f"exited with status {ran.exit_code} and printed nothing"
        )
    return result


# -- the command ------------------------------------------------------------------------------


async def _serve(config: WorkerConfig, console: Console) -> None:
    async with httpx.AsyncClient(
        base_url=config.url,
        timeout=REQUEST_TIMEOUT_SECONDS,
        headers={"User-Agent": f"orchestrator-worker/{__version__}"},
    ) as http:
        worker = Worker(config, http, console, sys.stdout)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, worker.stop, signum)
        try:
            await worker.run()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


def worker_command(
    name: Annotated[
        str, typer.Option("--name", help="The agent's name, unique among the server's agents")
    ],
    command: Annotated[
        str,
        typer.Option(
            "--command",
            metavar="CMD",
            help="Shell command run for each task, in the task's workspace",
        ),
    ],
    capability: Annotated[
        list[str] | None,
        typer.Option(
            "--capability",
            metavar="CAP",
            help="A capability the agent offers (repeatable); it gets the tasks whose "
            "required capabilities it all holds",
        ),
    ] = None,
    any_capability: Annotated[
        bool,
        typer.Option(
            "--any-capability",
            help="Take every task (demos, tests): registers every capability this worker "
            "knows of (those of the planning templates and the task types). A task "
            "requiring a capability named nowhere else is still not taken: add it with "
            "--capability",
        ),
    ] = False,
    concurrency: Annotated[
        int, typer.Option(min=1, max=1000, help="Tasks run at the same time")
    ] = 1,
    agent_type: Annotated[str, typer.Option(help="The agent's type")] = "implementer",
    registration_token: Annotated[
        str | None,
        typer.Option(
            envvar="AGENT_REGISTRATION_TOKEN",
            show_envvar=True,
            help="The server's AGENT_REGISTRATION_TOKEN, when it has one",
        ),
    ] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Run a command for each task, as an external agent (EAP) of a running server.

    Registers, heartbeats and pulls tasks. Each task's command runs through the shell
    with the task's workspace as working directory (the workspace the task names, else
    $ORCHESTRATOR_HOME/worker/<task id>), the task's prompt on stdin and in
    ORCHESTRATOR_TASK_PROMPT, and ORCHESTRATOR_TASK_ID, ORCHESTRATOR_SESSION_ID,
    ORCHESTRATOR_TASK_TYPE, ORCHESTRATOR_TASK_TITLE and ORCHESTRATOR_TASK_ATTEMPT in its
    environment. Its output is printed and sent to the session's logs. Exit status 0
    completes the task and its last output line becomes the task's summary; anything else
    fails it with the output's tail as reason. The command may report its usage by
    writing {"tokens_used": N, "cost_usd": X} to $ORCHESTRATOR_USAGE_FILE (a file in a
    temporary directory of the task's own); it goes with the result. A command still
    running after the task's timeout is killed (its whole process group). Ctrl-C or
    SIGTERM: the running commands are killed and reported failed, the agent deregisters,
    exit 0.
    """
    capabilities = capabilities_for(capability or (), any_capability)
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    with reported_errors(console):
        config = WorkerConfig(
            url=base_url(url),
            name=name,
            command=command,
            capabilities=capabilities,
            any_capability=any_capability,
            agent_type=agent_type,
            concurrency=concurrency,
            registration_token=registration_token,
            home=Path(os.environ.get("ORCHESTRATOR_HOME") or ".orchestrator").resolve(),
        )
        asyncio.run(_serve(config, console))
