"""Where the OpenCode server is: one we were told of, or one we start and keep alive.

* ``OPENCODE_HOST`` set: connect to ``OPENCODE_HOST:OPENCODE_PORT`` with
  ``OPENCODE_PASSWORD``.
* Otherwise, with an ``opencode`` binary (``OPENCODE_BIN`` or on ``PATH``): start
  ``opencode serve`` on a free loopback port with a generated password, wait for its
  "listening" line (requests sent before it can hang), and start it again if it dies.
* Neither: OpenCode is unavailable, and ``reason`` says how to fix that.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from .client import OpenCodeClient, OpenCodeError

log = structlog.get_logger("industrial_orchestrator.executors.opencode.server")

_LISTENING = re.compile(rb"opencode server listening on (http://\S+)")
HOW_TO_CONFIGURE = (
    "set OPENCODE_HOST (and OPENCODE_PORT, OPENCODE_PASSWORD) to a running `opencode serve`, "
    "or install opencode (`npm install opencode-linux-x64`, then OPENCODE_BIN or PATH) so "
    "the orchestrator starts its own"
)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start a managed server."""

    binary: Path
    home: Path
    """Working directory, and the server's log file's place."""
    env: Mapping[str, str]
    """Added to the orchestrator's environment (e.g. ``OPENCODE_CONFIG_CONTENT``)."""
    start_timeout_seconds: float = 60.0


def find_binary(configured: Path | None) -> Path | None:
    if configured is not None:
        return configured if configured.is_file() and os.access(configured, os.X_OK) else None
    found = shutil.which("opencode")
    return Path(found) if found else None


class OpenCodeServer:
    """The connection to OpenCode that executors and routes use."""

    def __init__(self) -> None:
        self.client: OpenCodeClient | None = None
        self.reason: str | None = "OpenCode has not been started"
        self.restarts = 0

    @property
    def available(self) -> bool:
        return self.client is not None and self.reason is None

    async def start(self) -> None: ...

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class ExternalServer(OpenCodeServer):
    """An OpenCode server someone else runs."""

    def __init__(self, base_url: str, password: str, *, timeout_seconds: float) -> None:
        super().__init__()
        self.client = OpenCodeClient(base_url, password, timeout_seconds=timeout_seconds)
        self.reason = None

    async def start(self) -> None:
        assert self.client is not None
        try:
            health = await self.client.health()
        except OpenCodeError as exc:
            # Not fatal: it may come up later; the executor's calls say so meanwhile.
            log.warning("opencode_unreachable", url=self.client.base_url, error=str(exc))
            return
        log.info("opencode_connected", url=self.client.base_url, version=health.get("version"))


class MissingServer(OpenCodeServer):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ManagedServer(OpenCodeServer):
    """An ``opencode serve`` of our own, restarted when it dies."""

    def __init__(self, spec: ServerSpec, *, timeout_seconds: float = 15.0) -> None:
        super().__init__()
        self._spec = spec
        self._timeout = timeout_seconds
        self._password = secrets.token_urlsafe(24)
        self._port = _free_port()
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._up = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        """Start the server and wait until it listens (or give up, with ``reason`` set)."""
        await self._launch()
        self._supervisor = asyncio.create_task(self._supervise(), name="opencode-supervisor")

    async def wait_up(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._up.wait()
        return self._up.is_set()

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._stop()
        await super().close()

    async def _launch(self) -> None:
        spec = self._spec
        spec.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **spec.env,
            "OPENCODE_SERVER_PASSWORD": self._password,
            "OPENCODE_SERVER_USERNAME": "opencode",
        }
        try:
            self._process = await asyncio.create_subprocess_exec(
                str(spec.binary),
                "serve",
                "--hostname",
                "127.0.0.1",
                "--port",
                str(self._port),
                cwd=spec.home,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self.reason = f"could not start {spec.binary}: {exc}; {HOW_TO_CONFIGURE}"
            log.error("opencode_start_failed", binary=str(spec.binary), error=str(exc))
            return
        url = await self._listening_url()
        if url is None:
            await self._stop()
            return
        if self.client is None:
            self.client = OpenCodeClient(url, self._password, timeout_seconds=self._timeout)
        self.reason = None
        self._up.set()
        log.info("opencode_started", url=url, pid=self._process.pid, restarts=self.restarts)

    async def _listening_url(self) -> str | None:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        seen: list[bytes] = []

        async def read() -> str | None:
            assert process.stdout is not None
            while line := await process.stdout.readline():
                match = _LISTENING.search(line)
                if match:
                    return match.group(1).decode()
                seen.append(line.strip())
            return None

        try:
            async with asyncio.timeout(self._spec.start_timeout_seconds):
                url = await read()
        except TimeoutError:
            url = None
        if url is None:
            tail = b" | ".join(seen[-5:]).decode(errors="replace")
            self.reason = (
                f"opencode serve did not start listening within "
                f"{self._spec.start_timeout_seconds:.0f} s ({tail or 'no output'})"
            )
            log.error("opencode_start_failed", reason=self.reason)
            return None
        # Keep draining its output so a chatty server never blocks on a full pipe.
        self._drainer = asyncio.create_task(self._drain(process), name="opencode-output")
        return url

    @staticmethod
    async def _drain(process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with contextlib.suppress(Exception):
            while line := await process.stdout.readline():
                log.debug("opencode_output", line=line.decode(errors="replace").rstrip())

    async def _supervise(self) -> None:
        backoff = 0.5
        while not self._closing:
            process = self._process
            if process is not None and process.returncode is None:
                code = await process.wait()
                if self._closing:
                    return
                self._up.clear()
                self.reason = f"the managed opencode server exited with {code}; restarting"
                log.warning("opencode_died", code=code)
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            self.restarts += 1
            await self._launch()
            if self._up.is_set():
                backoff = 0.5

    async def _stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(5.0):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, be sent SIGTERM when the orchestrator dies,
    even by SIGKILL, so no server is left behind listening with nobody to use it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
