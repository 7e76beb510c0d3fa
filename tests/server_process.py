"""The real ``orchestrator`` command as a subprocess, for tests that need a live server.

``ServerProcess`` starts ``orchestrator serve`` on a free port, waits for ``GET /health``
and can stop it abruptly (SIGKILL) or gracefully (SIGTERM), then start it again on the
same database and port. Output goes to files, one pair per start, so a chatty server can
never block on a full pipe and its stderr can be shown when it fails to come up.

Every process it starts is killed by ``close()``; use it as a context manager inside a
fixture so that a failing test leaves nothing running::

    @pytest.fixture
    def server(tmp_path):
        env = {"ORCHESTRATOR_HOME": str(tmp_path / "home"), "LOG_LEVEL": "WARNING"}
        with ServerProcess(env, tmp_path / "server") as server:
            yield server
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from industrial_orchestrator.config import Settings

# The console script installed beside the interpreter running the tests.
ORCHESTRATOR = Path(sys.executable).with_name("orchestrator")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

# Variables of the developer's shell that would change what the subprocess does.
_SCRUBBED = {name.upper() for name in Settings.model_fields} | {"COLUMNS", "LINES"}


def orchestrator_command(*args: str) -> list[str]:
    if not ORCHESTRATOR.is_file():
        pytest.fail(f"console script not found at {ORCHESTRATOR}: is the package installed?")
    return [str(ORCHESTRATOR), *args]


def orchestrator_env(**variables: str) -> dict[str, str]:
    """The test process's environment without any orchestrator setting, plus ``variables``.

    The session engine is off unless ``ENGINE_ENABLED="true"`` is passed: most tests drive
    sessions by hand, and the engine would move them on (plan them) behind their back."""
    env = {key: value for key, value in os.environ.items() if key.upper() not in _SCRUBBED}
    env["PYTHONUNBUFFERED"] = "1"
    env["ENGINE_ENABLED"] = "false"
    env["INTERNAL_AGENTS"] = "false"
    env["WORKSPACE_ROOTS"] = tempfile.gettempdir()
    env.update(variables)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrator *args`` to completion (failing the test if it outlives ``timeout``)."""
    try:
        return subprocess.run(
            orchestrator_command(*args),
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has already killed it
        pytest.fail(
            f"`orchestrator {' '.join(args)}` still running after {timeout}s\n"
            f"--- stdout ---\n{_text(exc.stdout)}\n--- stderr ---\n{_text(exc.stderr)}"
        )


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


@dataclass(frozen=True)
class Run:
    """One start of the server: its process and where its output went."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


class ServerProcess:
    """``orchestrator serve --host 127.0.0.1 --port <port>`` with the given environment
    (``command``: another command that takes ``--host`` and ``--port``)."""

    def __init__(
        self,
        env: Mapping[str, str],
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        command: Sequence[str] = ("serve",),
    ) -> None:
        self.env = orchestrator_env(**env)
        self.command = tuple(command)
        self.workdir = workdir  # cwd of the server: keeps a stray .env out of the test
        self.host = host
        self.port = free_port()
        self.runs: list[Run] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def current(self) -> Run:
        assert self.runs, "the server was never started"
        return self.runs[-1]

    @property
    def running(self) -> bool:
        return bool(self.runs) and self.current.process.poll() is None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10.0)

    def _command(self) -> tuple[str, ...]:
        """``serve`` runs one process unless the test asks for more: a process per core
        (the default on PostgreSQL) would only slow the suite's many servers down, and
        ``tests/reliability/test_runtime_processes.py`` tests several."""
        if self.command[:1] == ("serve",) and "--workers" not in self.command:
            return (*self.command, "--workers", "1")
        return self.command

    def start(self, timeout: float = START_TIMEOUT) -> Run:
        """Start the server and return once ``GET /health`` answers 200."""
        assert not self.running, "the server is already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        index = len(self.runs) + 1
        stdout_path = self.workdir / f"server-{index}.stdout"
        stderr_path = self.workdir / f"server-{index}.stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                orchestrator_command(
                    *self._command(), "--host", self.host, "--port", str(self.port)
                ),
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        run = Run(process, stdout_path, stderr_path)
        self.runs.append(run)
        self._wait_healthy(run, timeout)
        return run

    def _wait_healthy(self, run: Run, timeout: float) -> None:
        last_error = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=1.0) as http:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                code = run.process.poll()
                if code is not None:
                    self._fail(run, f"exited with code {code} before serving /health")
                try:
                    response = http.get("/health")
                except httpx.TransportError as exc:
                    last_error = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                time.sleep(0.05)
        self._kill(run)
        self._fail(run, f"did not answer GET /health within {timeout}s (last: {last_error})")

    def _fail(self, run: Run, what: str) -> NoReturn:
        pytest.fail(
            f"orchestrator serve on {self.base_url} {what}\n"
            f"--- stderr ---\n{run.stderr}\n--- stdout ---\n{run.stdout}",
            pytrace=False,
        )

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs, only what was committed survives."""
        return self._kill(self.current)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait for a graceful exit; fails the test if it does not come."""
        run = self.current
        run.process.send_signal(signal.SIGTERM)
        try:
            return run.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill(run)
            self._fail(run, f"ignored SIGTERM for {timeout}s")

    def restart(self, *, graceful: bool) -> Run:
        if graceful:
            self.terminate()
        else:
            self.kill()
        return self.start()

    @staticmethod
    def _kill(run: Run) -> int:
        if run.process.poll() is None:
            run.process.kill()
        return run.process.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Kill every process this object started (idempotent)."""
        for run in self.runs:
            self._kill(run)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
