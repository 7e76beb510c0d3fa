"""The real ``opencode serve`` (1.18.33) talking to our scripted model, for integration tests.

* ``opencode_bin``: the binary (``OPENCODE_BIN``, else the one ``make`` installs under
  ``.opencode/``). Missing, the test is skipped with the reason; under CI=true it fails.
* ``scripted_model``: the ``ScriptedModel`` behind ``opencode_server``, served from a thread
  so that one model and one server last the whole run (starting OpenCode takes seconds)
  while each test keeps its own event loop. Its ``calls`` accumulate over the run: select
  a test's own with ``chat_calls(session_id)`` or ``ScriptedCall.session``.
* ``opencode_server``: ``opencode serve`` on a free port, configured with the scripted
  model as its only provider, with HOME and XDG dirs of its own; killed at the end.
* ``git_repo``: a fresh git repository with one commit, for OpenCode to work in (the
  first prompt in a directory costs OpenCode a few seconds of set-up).

``EventStream`` reads ``GET /event`` and lets a test wait for the event it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from industrial_orchestrator.testing.scripted_model import ScriptedModel, opencode_config

from ..backends import IN_CI

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".opencode/node_modules/opencode-linux-x64/bin/opencode"
START_TIMEOUT = 60.0  # a loaded machine has been seen to take 17 s
STOP_GRACE = 3.0
LISTENING = "opencode server listening on "
Event = dict[str, Any]


@pytest.fixture(scope="session")
def opencode_bin() -> Path:
    configured = os.environ.get("OPENCODE_BIN")
    path = Path(configured) if configured else DEFAULT_BIN
    if path.is_file() and os.access(path, os.X_OK):
        return path
    reason = (
        f"opencode binary not found at {path}: `make pytest` installs opencode-linux-x64@1.18.33 "
        "under .opencode/ (or set OPENCODE_BIN)"
    )
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the OpenCode integration tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def scripted_model() -> Iterator[ScriptedModel]:
    with ScriptedModel().in_thread() as model:
        yield model


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A git repository with one committed file (``README.md``, "hello")."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("hello\n")
    identity = ["-c", "user.name=Integration", "-c", "user.email=integration@example.invalid"]
    for args in (["init", "-q"], ["add", "."], [*identity, "commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


@dataclass(frozen=True)
class OpenCodeServer:
    """A running ``opencode serve``: where it listens and how to log in."""

    base_url: str
    password: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth("opencode", self.password)

    def client(self, timeout: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, auth=self.auth, timeout=timeout)


def opencode_env(root: Path, password: str, config: Mapping[str, Any]) -> dict[str, str]:
    """The test's environment without OpenCode settings, with its home and config under
    ``root`` (so no user config, auth or cache leaks in, and nothing leaks out)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENCODE_")}
    dirs = {
        "HOME": root / "home",
        "XDG_CONFIG_HOME": root / "config",
        "XDG_DATA_HOME": root / "data",
        "XDG_CACHE_HOME": root / "cache",
        "XDG_STATE_HOME": root / "state",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["OPENCODE_SERVER_PASSWORD"] = password
    env["OPENCODE_CONFIG_CONTENT"] = json.dumps(config)
    env["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
    return env


@contextlib.contextmanager
def running_opencode(
    binary: Path, root: Path, config: Mapping[str, Any]
) -> Iterator[OpenCodeServer]:
    """``opencode serve --port 0`` (it tries 4096, else any free port) under ``root``,
    up once it prints its listening line; stopped on exit, with any children.

    It runs in a process group of its own because OpenCode 1.18.33 does not always honour
    SIGTERM (once it has worked in a few directories it can ignore it for a minute and
    more): the group gets SIGTERM, then SIGKILL after a short grace period."""
    password = secrets.token_urlsafe(16)
    root.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = root / "stdout.log", root / "stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [str(binary), "serve", "--port", "0", "--hostname", "127.0.0.1"],
            cwd=root,
            env=opencode_env(root, password, config),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        base_url = _wait_listening(process, stdout_path, stderr_path)
        yield OpenCodeServer(base_url, password, process, stdout_path, stderr_path)
    finally:
        _signal_group(process, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE)
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _wait_listening(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for line in stdout.read_text(errors="replace").splitlines():
            if line.startswith(LISTENING):
                return line.removeprefix(LISTENING).strip()
        if process.poll() is not None:
            break
        time.sleep(0.05)
    state = "exited" if process.poll() is not None else f"not listening after {START_TIMEOUT}s"
    pytest.fail(
        f"opencode serve {state}\n--- stdout ---\n{stdout.read_text(errors='replace')}"
        f"\n--- stderr ---\n{stderr.read_text(errors='replace')[-4000:]}"
    )


@pytest.fixture(scope="session")
def opencode_server(
    opencode_bin: Path, scripted_model: ScriptedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenCodeServer]:
    config = opencode_config(scripted_model.base_url)
    with running_opencode(opencode_bin, tmp_path_factory.mktemp("opencode"), config) as server:
        yield server


class EventStream:
    """``GET /event?directory=…`` read in the background; ``wait_for`` returns the first
    event (from the start of the stream) that matches, remembering where it stopped."""

    def __init__(self, client: httpx.AsyncClient, directory: Path) -> None:
        self._client = client
        self._directory = directory
        self.events: list[Event] = []
        self._arrived = asyncio.Condition()
        self._position = 0
        self._ended: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStream:
        self._task = asyncio.create_task(self._read())
        await self.wait_for(lambda event: event["type"] == "server.connected", within=15)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        params = {"directory": str(self._directory)}
        timeout = httpx.Timeout(10.0, read=None)  # a heartbeat every 10 s, nothing else
        ended: BaseException = AssertionError("the event stream ended")
        try:
            async with self._client.stream("GET", "/event", params=params, timeout=timeout) as body:
                body.raise_for_status()
                async for line in body.aiter_lines():
                    if line.startswith("data: "):
                        async with self._arrived:
                            self.events.append(json.loads(line.removeprefix("data: ")))
                            self._arrived.notify_all()
        except Exception as exc:
            ended = exc
            raise
        finally:
            async with self._arrived:
                self._ended = ended
                self._arrived.notify_all()

    async def wait_for(self, matches: Callable[[Event], bool], *, within: float = 30) -> Event:
        """The next event, after the last one returned, for which ``matches`` is true."""
        async with asyncio.timeout(within), self._arrived:
            while True:
                while self._position < len(self.events):
                    event = self.events[self._position]
                    self._position += 1
                    if matches(event):
                        return event
                if self._ended is not None:
                    raise AssertionError("the event stream ended") from self._ended
                await self._arrived.wait()

    def of_session(self, session_id: str, kind: str | None = None) -> list[Event]:
        """Every event so far of ``session_id`` (of type ``kind`` if given)."""
        return [
            event
            for event in self.events
            if event["properties"].get("sessionID") == session_id
            and (kind is None or event["type"] == kind)
        ]


def session_event(session_id: str, kind: str) -> Callable[[Event], bool]:
    return lambda event: (
        event["type"] == kind and event["properties"].get("sessionID") == session_id
    )
