"""A real ``orchestrator serve`` subprocess for a benchmark, as deployed: on a free
loopback port, in a working directory of its own (so no ``.env`` is read), with every
orchestrator variable of the calling environment removed, and stopped on the way out
(also on failure or Ctrl-C). Its output goes to ``server.log`` in that directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from harness.main import BenchError
from industrial_orchestrator.config import Settings

LOOPBACK = "127.0.0.1"
SESSIONS_PATH = "/api/v1/sessions"
EAP = "/api/v1/agents/external"
PREFIX = "io_bench_"
"""Of every temporary directory, database and Redis key prefix a benchmark makes."""
SERVER_LOG = "server.log"

REQUEST_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SERVER_START_ATTEMPTS = 3


@contextmanager
def temporary_workdir() -> Iterator[Path]:
    """A temporary directory for a server's home, deleted when the script ends, not when
    the server is done with it. On this project's machine (ext4 without a journal) a new
    file or directory costs several times its CPU for half a minute after many were
    deleted: the next size's server, started at once, paid for the last one's worktrees
    (a session's new repository: 3.6 ms of CPU, 14 ms right after 500 were deleted)."""
    directory = tempfile.TemporaryDirectory(prefix=PREFIX)
    _DELETED_AT_EXIT.append(directory)  # its finaliser deletes it as the interpreter ends
    yield Path(directory.name)


_DELETED_AT_EXIT: list[tempfile.TemporaryDirectory[str]] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def http_client(base_url: str, timeout: float = REQUEST_TIMEOUT_S) -> httpx.AsyncClient:
    """A client of the server, bypassing any proxy of the environment."""
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, trust_env=False)


def agent_client(base_url: str, timeout: float = REQUEST_TIMEOUT_S) -> aiohttp.ClientSession:
    """A cheap client for the benchmarks' no-op agents (``engine_sessions.NoopAgent``),
    bypassing any proxy of the environment. Not one connection only: an agent's heartbeat
    must not wait for its long-poll to end."""
    return aiohttp.ClientSession(
        base_url=base_url, timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
    )


def _orchestrator_executable() -> str:
    beside = Path(sys.executable).with_name("orchestrator")
    if beside.exists():
        return str(beside)
    found = shutil.which("orchestrator")
    if found is None:
        raise BenchError("no `orchestrator` command; install the project (make .venv/.dev)")
    return found


def server_env(home: Path, **overrides: str) -> dict[str, str]:
    """The caller's environment without any orchestrator setting, plus the bench's own."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {name: value for name, value in os.environ.items() if name.upper() not in ours}
    env.update(ORCHESTRATOR_HOME=str(home), LOG_LEVEL="WARNING", MAX_CONCURRENT_SESSIONS="100000")
    env.update(overrides)
    return env


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str) -> bool:
    """True once /health answers 200; False if the process exited first."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get("/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise BenchError(f"{base_url}/health did not answer 200 within {HEALTH_TIMEOUT_S:.0f} s")


@contextmanager
def running_server(
    env: dict[str, str], workdir: Path, *, workers: int = 1
) -> Iterator[tuple[str, int]]:
    """A healthy ``orchestrator serve --workers N`` (one process unless asked) on a free
    loopback port: yields (base URL, pid of ``serve``; its CPU counts its processes')."""
    command = _orchestrator_executable()
    log_path = workdir / SERVER_LOG
    for _attempt in range(SERVER_START_ATTEMPTS):
        port = free_port()
        base_url = f"http://{LOOPBACK}:{port}"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    command,
                    "serve",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                ],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if _wait_healthy(process, base_url):
                yield base_url, process.pid
                return
        finally:
            _stop(process)
        # Exited before answering: most likely the port was taken meanwhile; try another.
    raise BenchError(f"the server did not start; its output ends with:\n{_tail(log_path)}")


def server_output(workdir: Path) -> list[str]:
    """The server's non-blank output lines after its start-up banner (printed whatever
    ``LOG_LEVEL``), or none if it cannot be read."""
    try:
        lines = (workdir / SERVER_LOG).read_text(errors="replace").splitlines()[1:]
    except OSError:
        return []
    return [line for line in lines if line.strip()]


def log_record(line: str) -> dict[str, Any] | None:
    """A line of the server's output as its JSON log record, or None if it is not one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def last_exception_line(record: dict[str, Any]) -> str | None:
    """The last line of a log record's traceback (the exception itself), if it has one."""
    exception = str(record.get("exception") or "").strip().splitlines()
    return exception[-1] if exception else None
