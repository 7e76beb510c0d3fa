"""A restart keeps the agents: real ``orchestrator serve`` and ``orchestrator worker``
processes, the server SIGKILLed mid-session and started again on the same port.

* ``SECRET_KEY`` unset: the key kept in ``ORCHESTRATOR_HOME`` signs after the restart as
  before, so the worker's token is still good; it carries on as the same agent and the
  running session completes (SQLite, and PostgreSQL + Redis).
* The key changed across the restart (rotated, or the home lost): the worker's token is
  refused, it registers again under its name, which resumes the same agent, and the
  session completes all the same.
* An agent the operator removed is not brought back: its worker stops.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..cli.test_worker import WorkerProcess
from ..server_process import ServerProcess
from . import test_engine_e2e
from .test_engine_e2e import COMMAND, start_crud_session, tasks_of, wait_for_status

pytestmark = pytest.mark.slow

WAIT = 60.0
API = "/api/v1"

# SQLite, and PostgreSQL + Redis.
backend_env = test_engine_e2e.backend_env


def serve(tmp_path: Path, env: dict[str, str]) -> ServerProcess:
    settings = {
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "LOG_LEVEL": "WARNING",
        "ENGINE_ENABLED": "true",
        "ENGINE_TICK_SECONDS": "0.2",
        "AGENT_HEARTBEAT_SECONDS": "1",
        # On PostgreSQL the restarted process waits for its dead predecessor's ownership
        # lease to run out (SQLite, single-process, resumes at once).
        "SESSION_LEASE_SECONDS": "2",
        **env,
    }
    return ServerProcess(settings, tmp_path / "server")


def start_worker(server: ServerProcess, tmp_path: Path, command: str = COMMAND) -> WorkerProcess:
    return WorkerProcess(
        server.base_url,
        tmp_path / "worker-home",
        tmp_path / "workers",
        "--any-capability",
        "--command",
        command,
    )


def agent_ids(http: httpx.Client, name: str) -> list[str]:
    listing = http.get(f"{API}/agents", params={"page_size": 100})
    assert listing.status_code == 200, listing.text
    return [agent["id"] for agent in listing.json()["items"] if agent["name"] == name]


def wait_for_finished_tasks(http: httpx.Client, session_id: str, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        tasks = tasks_of(http, session_id).values()
        if sum(task["status"] == "COMPLETED" for task in tasks) >= count:
            return
        time.sleep(0.1)
    pytest.fail(f"fewer than {count} tasks of {session_id} completed")


def wait_for_output(worker: WorkerProcess, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in worker.output:
        assert time.monotonic() < deadline, f"the worker never said {text!r}\n{worker.output}"
        time.sleep(0.1)


def restart_mid_session(
    server: ServerProcess, tmp_path: Path, **after_env: str
) -> tuple[str, WorkerProcess, str, str]:
    """Start the server and a worker, run a session until two tasks are done, SIGKILL
    the server, start it again with ``after_env`` and wait for the session to end.
    Returns the final status, the worker and its agent id before and after."""
    workspace = tmp_path / "repo"
    workspace.mkdir()
    server.start()
    with server.client() as http:
        worker = start_worker(server, tmp_path)
        wait_for_output(worker, "is agent")
        [before] = agent_ids(http, worker.name)
        session_id = start_crud_session(http, workspace)
        wait_for_finished_tasks(http, session_id, 2)
        server.kill()
        server.env.update(after_env)
        server.start()  # same port, same home and database
        final = wait_for_status(http, session_id, "COMPLETED", "FAILED")
        assert final["status"] == "COMPLETED", (final, worker.output)
        [after] = agent_ids(http, worker.name)
    assert worker.process.poll() is None, f"the worker exited\n{worker.output}"
    return final["status"], worker, before, after


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def test_without_secret_key_a_restarted_server_keeps_its_workers(
    tmp_path: Path, backend_env: dict[str, str], workers: list[WorkerProcess]
):
    with serve(tmp_path, backend_env) as server:
        assert "SECRET_KEY" not in server.env
        _, worker, before, after = restart_mid_session(server, tmp_path)
        workers.append(worker)
        assert after == before
        # The kept key still signs: the worker's token was never refused.
        assert "token refused" not in worker.output
        assert (tmp_path / "home" / "secret_key").is_file()


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)
def test_a_worker_whose_token_is_refused_registers_again_as_the_same_agent(
    tmp_path: Path, backend_env: dict[str, str], workers: list[WorkerProcess]
):
    env = {**backend_env, "SECRET_KEY": "k" * 48}
    with serve(tmp_path, env) as server:
        _, worker, before, after = restart_mid_session(server, tmp_path, SECRET_KEY="r" * 48)
        workers.append(worker)
        assert after == before
        assert f"registered again, the same agent {before}" in worker.output


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)
def test_the_worker_of_a_removed_agent_stops(
    tmp_path: Path, backend_env: dict[str, str], workers: list[WorkerProcess]
):
    with serve(tmp_path, backend_env) as server, server.client() as http:
        server.start()
        worker = start_worker(server, tmp_path)
        workers.append(worker)
        wait_for_output(worker, "is agent")
        [agent_id] = agent_ids(http, worker.name)
        assert http.delete(f"{API}/agents/{agent_id}").status_code == 204
        assert worker.process.wait(WAIT) == 1, worker.output
        assert "no longer registered" in worker.output
        assert agent_ids(http, worker.name) == []
