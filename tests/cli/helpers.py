"""Running ``orchestrator session ...`` against a live server, and reading its output."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..server_process import orchestrator_command, orchestrator_env, run_cli

API = "/api/v1"
Json = dict[str, Any]
WAIT = 15.0  # for anything the server or the watcher should do within a second or two


def session_cli(
    url: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``orchestrator session <args> --url <url>``, run to completion."""
    return run_cli("session", *args, "--url", url, env=env or orchestrator_env(), cwd=cwd)


def cli_json(url: str, *args: str, cwd: Path) -> Any:
    """Run a ``--json`` command that must succeed and return its one JSON document."""
    result = session_cli(url, *args, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def flat(text: str) -> str:
    """Whitespace collapsed, so a message wrapped by the console can be searched."""
    return " ".join(text.split())


def create(http: httpx.Client, title: str = "watched", **fields: Any) -> Json:
    body = {"title": title, "initial_prompt": f"Prompt for {title}", **fields}
    response = http.post(f"{API}/sessions", json=body)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


def act(http: httpx.Client, session_id: str, action: str, **body: Any) -> Json:
    response = http.post(f"{API}/sessions/{session_id}/{action}", json=body or None)
    assert response.status_code == 200, response.text
    moved: Json = response.json()
    return moved


def log(http: httpx.Client, session_id: str, text: str, stream: str = "stdout") -> int:
    response = http.post(f"{API}/sessions/{session_id}/logs", json={"stream": stream, "text": text})
    assert response.status_code == 201, response.text
    return int(response.json()["events"])


def stored_events(http: httpx.Client, session_id: str) -> list[Json]:
    response = http.get(f"{API}/sessions/{session_id}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class WatchProcess:
    """``orchestrator session watch`` running in the background; stdout read line by line
    (by a thread, so a read can time out), stderr kept in a file."""

    def __init__(self, url: str, *args: str, cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.stderr_path = cwd / f"watch-{time.monotonic_ns()}.stderr"
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                orchestrator_command("session", "watch", *args, "--url", url),
                env=orchestrator_env(),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                encoding="utf-8",
            )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def next_line(self, timeout: float = WAIT) -> str | None:
        """The next line of stdout, or None at its end."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(
                f"watch printed nothing for {timeout}s\n--- stdout so far ---\n"
                f"{''.join(self.lines)}\n--- stderr ---\n{self.stderr}"
            )
        if line is not None:
            self.lines.append(line)
        return line

    def next_event(self, timeout: float = WAIT) -> Json:
        line = self.next_line(timeout)
        assert line is not None, f"watch ended early\n--- stderr ---\n{self.stderr}"
        event: Json = json.loads(line)
        return event

    def until_seq(self, seq: int, timeout: float = WAIT) -> list[Json]:
        """Events up to and including the one with ``seq``."""
        events = [self.next_event(timeout)]
        while events[-1]["seq"] < seq:
            events.append(self.next_event(timeout))
        return events

    def rest(self, timeout: float = WAIT) -> list[str]:
        """Every line until stdout ends."""
        rest: list[str] = []
        while (line := self.next_line(timeout)) is not None:
            rest.append(line)
        return rest

    def wait(self, timeout: float = WAIT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"watch still running after {timeout}s\n--- stderr ---\n{self.stderr}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT)
        self._reader.join(WAIT)  # the pipe is at its end once the process is gone
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> WatchProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
