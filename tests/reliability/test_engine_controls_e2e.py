"""The engine's controls end to end: real ``orchestrator serve`` processes with the engine
on (SQLite, and PostgreSQL + Redis) and real ``orchestrator worker`` processes.

* Pause takes the task in flight back (the worker kills its command) and hands nothing out
  until resume; the session then completes with every task done once.
* A session past its ``timeout_seconds`` ends TIMEOUT, its task CANCELLED and the command
  killed.
* A session past its ``max_tokens`` (reported through ``ORCHESTRATOR_USAGE_FILE``) ends
  FAILED ``budget_exceeded``, its remaining tasks CANCELLED.
* A worker SIGKILLed mid-task: its lease runs out, the task goes to another worker as
  attempt 2, and is done once.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..cli.test_worker import WorkerProcess, group_alive
from ..server_process import ServerProcess
from .test_engine_e2e import backend_env, serve, tasks_of, wait_for_status, worktree_of

pytestmark = pytest.mark.slow
__all__ = ["backend_env"]  # the fixture, shared with test_engine_e2e: pytest finds it by name


API = "/api/v1"
SOON = 10.0  # for what the engine or a worker does within a beat or two
ENDED = ("COMPLETED", "FAILED", "PARTIALLY_COMPLETED", "TIMEOUT", "CANCELLED", "STOPPED")
PROMPT = "Build a CRUD REST API for todo items with a database"
DONE = 'echo "$ORCHESTRATOR_TASK_ID" >> done.log'

Json = dict[str, Any]


class Crew:
    """The workers of a test, each command's process group noted in a file: leaving the
    ``with`` block kills the workers and whatever a SIGKILLed worker left running."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.groups = root / "process-groups"
        self.workers: list[WorkerProcess] = []

    def start(self, server: ServerProcess, command: str) -> WorkerProcess:
        noted = f"echo $$ >> {shlex.quote(str(self.groups))}; {command}"
        worker = WorkerProcess(
            server.base_url,
            self.root / "worker-home",
            self.root / "workers",
            "--any-capability",
            "--command",
            noted,
        )
        self.workers.append(worker)
        return worker

    @property
    def output(self) -> str:
        return "\n".join(worker.output for worker in self.workers)

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for worker in self.workers:
            worker.kill()
        if self.groups.exists():
            for pgid in {int(line) for line in self.groups.read_text().split()}:
                if group_alive(pgid):
                    with suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgid, signal.SIGKILL)


def wait_until(check: Callable[[], Any], what: str, timeout: float = SOON) -> Any:
    """``check()``'s first truthy answer, polled; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (answer := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)
    return answer


def create_session(http: httpx.Client, workspace: Path, **fields: Any) -> str:
    """A started session in ``workspace``; its commands run in its worktree (see
    ``worktree_of``), where the files the tests look at are written."""
    body = {
        "title": "Todo service",
        "initial_prompt": PROMPT,
        "workspace": str(workspace),
        "auto_start": True,
        **fields,
    }
    created = http.post(f"{API}/sessions", json=body)
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    return session_id


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def leaves_of(tasks: dict[str, Json]) -> set[str]:
    parents = {task["parent_id"] for task in tasks.values()}
    return {task_id for task_id in tasks if task_id not in parents}


def statuses(http: httpx.Client, session_id: str) -> dict[str, str]:
    return {task_id: task["status"] for task_id, task in tasks_of(http, session_id).items()}


def attempts_of(http: httpx.Client, task_id: str) -> list[Json]:
    response = http.get(f"{API}/tasks/{task_id}/attempts")
    assert response.status_code == 200, response.text
    attempts: list[Json] = response.json()
    return attempts


def agent_ids(http: httpx.Client) -> dict[str, str]:
    """Agent name -> id."""
    return {agent["name"]: agent["id"] for agent in http.get(f"{API}/agents").json()["items"]}


def backend(env: dict[str, str]) -> str:
    return "postgresql" if env else "sqlite"


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)  # the crash tests run on both
def test_pause_takes_the_task_in_flight_back_and_resume_completes_every_task_once(
    tmp_path: Path, backend_env: dict[str, str]
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    hold = tmp_path / "hold"
    # done.log is written only at the end: a command killed by the pause never writes it.
    # While `hold` exists a command waits after its sleep, so the task in flight at the
    # pause cannot finish before the abort reaches its worker (a beat later).
    command = (
        'echo "$ORCHESTRATOR_TASK_ID" >> started.log; sleep 0.5; '
        f"while [ -f {shlex.quote(str(hold))} ]; do sleep 0.1; done; {DONE}"
    )
    with serve(tmp_path, backend_env) as server, server.client() as http, Crew(tmp_path) as crew:
        server.start()
        began = time.monotonic()
        worker = crew.start(server, command)
        session_id = create_session(http, workspace, template="crud")
        tree = worktree_of(http, session_id, workspace, tmp_path / "home")
        [first] = wait_until(lambda: lines(tree / "done.log"), "a first task done")
        hold.touch()
        wait_until(
            lambda: statuses(http, session_id).get(first) == "COMPLETED",
            "the first task recorded",
        )
        in_flight = wait_until(
            lambda: [t for t, s in statuses(http, session_id).items() if s == "RUNNING"],
            "a second task started",
        )
        [held] = in_flight
        paused = http.post(f"{API}/sessions/{session_id}/pause")
        assert paused.status_code == 200, paused.text
        paused_at = time.monotonic()

        wait_until(lambda: "aborted" in worker.output, f"the command aborted\n{worker.output}")
        wait_until(
            lambda: "RUNNING" not in statuses(http, session_id).values(),
            "the task in flight taken back",
        )
        aborted_after = time.monotonic() - paused_at
        still = (statuses(http, session_id), lines(tree / "started.log"))
        assert still[0][held] == "READY", still
        assert lines(tree / "done.log") == [first]
        quiet_until = time.monotonic() + 2.0
        while time.monotonic() < quiet_until:
            now = (statuses(http, session_id), lines(tree / "started.log"))
            assert now == still, "a task was handed out while the session was PAUSED"
            assert lines(tree / "done.log") == [first]
            time.sleep(0.1)
        assert http.get(f"{API}/sessions/{session_id}").json()["status"] == "PAUSED"

        hold.unlink()
        resumed = http.post(f"{API}/sessions/{session_id}/resume")
        assert resumed.status_code == 200, resumed.text
        final = wait_for_status(http, session_id, *ENDED)
        took = time.monotonic() - began
        assert final["status"] == "COMPLETED", (final, crew.output)

        tasks = tasks_of(http, session_id)
        done = lines(tree / "done.log")
        assert sorted(done) == sorted(leaves_of(tasks)), "every task once, summaries never"
        assert all(task["status"] == "COMPLETED" for task in tasks.values())
        assert lines(tree / "started.log").count(held) == 2, "aborted, then re-run"
        assert list(workspace.iterdir()) == [], "the operator's directory is not worked in"
        assert [(a["attempt"], a["outcome"]) for a in attempts_of(http, held)] == [
            (1, "released"),
            (2, "completed"),
        ]
        print(
            f"\n[engine pause {backend(backend_env)}] command aborted {aborted_after:.1f} s "
            f"after pause; {len(done)} tasks, {took:.1f} s"
        )


TIMEOUT = 5


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)  # the crash tests run on both
def test_a_session_past_its_timeout_ends_timeout_and_its_command_is_killed(
    tmp_path: Path, backend_env: dict[str, str]
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    with serve(tmp_path, backend_env) as server, server.client() as http, Crew(tmp_path) as crew:
        server.start()
        worker = crew.start(server, "echo $$ > pgid; echo started; sleep 30; touch finished")
        # The worker is there before the clock starts: the task is to be taken at once.
        wait_until(lambda: worker.name in agent_ids(http), f"registered\n{worker.output}")
        # The clock includes making the session's worktree (git), hence a few seconds.
        session_id = create_session(http, workspace, template="single", timeout_seconds=TIMEOUT)
        tree = worktree_of(http, session_id, workspace, tmp_path / "home")
        wait_until(lambda: (tree / "pgid").exists(), f"the command started\n{worker.output}")
        started = http.get(f"{API}/sessions/{session_id}").json()["started_at"]
        assert started is not None
        final = wait_for_status(http, session_id, *ENDED)
        assert final["status"] == "TIMEOUT", final
        assert final["status_reason"] == f"ran longer than {TIMEOUT} s"
        assert final["duration_seconds"] < TIMEOUT + 3, final

        wait_until(lambda: "aborted" in worker.output, f"the command aborted\n{worker.output}")
        pgid = int((tree / "pgid").read_text())
        wait_until(lambda: not group_alive(pgid), "the command's process group gone")
        [task] = tasks_of(http, session_id).values()
        assert task["status"] == "CANCELLED"
        [attempt] = attempts_of(http, task["id"])
        assert (attempt["outcome"], attempt["error"]) == ("released", "the session is TIMEOUT")
        assert not (tree / "finished").exists()
        assert list(workspace.iterdir()) == []
        assert worker.process.poll() is None, "the worker itself keeps serving"
        print(
            f"\n[engine timeout {backend(backend_env)}] TIMEOUT after "
            f"{final['duration_seconds']:.1f} s, command killed"
        )


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)  # the crash tests run on both
def test_a_session_over_its_token_budget_fails_and_its_remaining_tasks_are_cancelled(
    tmp_path: Path, backend_env: dict[str, str]
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    report = """echo '{"tokens_used": 40}' > "$ORCHESTRATOR_USAGE_FILE" """
    with serve(tmp_path, backend_env) as server, server.client() as http, Crew(tmp_path) as crew:
        server.start()
        crew.start(server, f"{DONE}; {report}")
        session_id = create_session(http, workspace, template="crud", max_tokens=50)
        tree = worktree_of(http, session_id, workspace, tmp_path / "home")
        final = wait_for_status(http, session_id, *ENDED)
        assert final["status"] == "FAILED", (final, crew.output)
        assert final["status_reason"].startswith("budget_exceeded"), final
        assert final["status_reason"] == "budget_exceeded: 80 tokens used, budget 50"
        assert final["tokens_used"] == 80

        done = lines(tree / "done.log")
        assert len(done) == 2, "the budget ran out with the second task"
        assert list(workspace.iterdir()) == []

        def settled() -> dict[str, Json] | None:
            tasks = tasks_of(http, session_id)
            finished = {task["status"] for task in tasks.values()} <= {"COMPLETED", "CANCELLED"}
            return tasks if finished else None

        tasks = wait_until(settled, "the remaining tasks cancelled")
        completed = {t for t, task in tasks.items() if task["status"] == "COMPLETED"}
        assert completed == set(done)
        assert len(tasks) - len(completed) == 6, "five tasks and the summary cancelled"
        print(f"\n[engine budget {backend(backend_env)}] {final['status_reason']}")


def test_a_sigkilled_workers_task_is_leased_again_to_another_and_done_once(
    tmp_path: Path, backend_env: dict[str, str]
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    settings = {
        **backend_env,
        "TASK_LEASE_SECONDS": "3",
        "AGENT_HEARTBEAT_SECONDS": "1",
        "REAPER_SECONDS": "0.5",
    }
    with serve(tmp_path, settings) as server, server.client() as http, Crew(tmp_path) as crew:
        server.start()
        first = crew.start(server, "touch started-$ORCHESTRATOR_TASK_ID; sleep 30")
        session_id = create_session(http, workspace, template="single")
        [task_id] = wait_until(lambda: tasks_of(http, session_id), "the session planned")
        tree = worktree_of(http, session_id, workspace, tmp_path / "home")
        wait_until(
            lambda: (tree / f"started-{task_id}").exists(),
            f"the first worker started the task\n{first.output}",
        )
        first.process.kill()
        first.process.wait()
        killed_at = time.monotonic()
        second = crew.start(server, DONE)
        final = wait_for_status(http, session_id, *ENDED)
        taken_over = time.monotonic() - killed_at
        assert final["status"] == "COMPLETED", (final, crew.output)

        ids = agent_ids(http)
        attempts = attempts_of(http, task_id)
        assert [(a["attempt"], a["agent_id"], a["outcome"]) for a in attempts] == [
            (1, ids[first.name], "expired"),
            (2, ids[second.name], "completed"),
        ], attempts
        assert lines(tree / "done.log") == [task_id]
        assert list(workspace.iterdir()) == []
        print(
            f"\n[engine worker killed {backend(backend_env)}] attempt 2 completed by another "
            f"worker {taken_over:.1f} s after SIGKILL"
        )
