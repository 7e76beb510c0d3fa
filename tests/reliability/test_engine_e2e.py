"""The engine end to end: real ``orchestrator serve`` processes with the engine on, and
real ``orchestrator worker`` processes doing the tasks by running a shell command.

* A multi-task plan runs to COMPLETED with every task done once, in dependency order,
  through a failed verification and a fixing round (SQLite, and PostgreSQL + Redis).
* The orchestrator is SIGKILLed mid-session and restarted: the session completes, and no
  task that had finished before the kill is done again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..backends import REDIS_HOST, postgres_url_for, require_redis, temporary_postgres_database
from ..cli.test_worker import WorkerProcess
from ..server_process import ServerProcess

pytestmark = pytest.mark.slow

SECRET = "engine-e2e-secret-key-0123456789abcdef"
WAIT = 60.0
# Each task appends its id to done.log in its working directory (the session's worktree);
# a fixing task (its prompt holds the failed verification) also creates the file the
# verification, run in the worktree too, looks for.
COMMAND = (
    "grep -q 'The verification command' && touch fixed.txt; "
    'sleep 0.2; echo "$ORCHESTRATOR_TASK_ID" >> done.log'
)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    require_redis()
    with temporary_postgres_database("io_engine") as name:
        yield {
            "DATABASE_URL": postgres_url_for(name),
            "REDIS_HOST": REDIS_HOST,
            "REDIS_PREFIX": f"test-{uuid.uuid4().hex}",
        }


def serve(tmp_path: Path, env: dict[str, str]) -> ServerProcess:
    settings = {
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "LOG_LEVEL": "WARNING",
        "ENGINE_ENABLED": "true",
        "ENGINE_TICK_SECONDS": "0.2",
        "AGENT_HEARTBEAT_SECONDS": "1",
        "SECRET_KEY": SECRET,
        **env,
    }
    return ServerProcess(settings, tmp_path / "server")


def start_crud_session(http: httpx.Client, workspace: Path, **options: Any) -> str:
    """A started session whose plan is the crud template's; its id."""
    created = http.post(
        "/api/v1/sessions",
        json={
            "title": "Todo service",
            "initial_prompt": "Build a CRUD REST API for todo items with a database",
            "template": "crud",
            "workspace": str(workspace),
            "auto_start": True,
            **options,
        },
    )
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    return session_id


def worktree_of(http: httpx.Client, session_id: str, workspace: Path, *homes: Path) -> Path:
    """The session's own working tree, once the engine has made it: a directory
    ``<home>/worktrees/<session id>`` of one of the servers' homes, not the workspace."""
    deadline = time.monotonic() + WAIT
    while (shown := http.get(f"/api/v1/sessions/{session_id}").json())["worktree"] is None:
        assert time.monotonic() < deadline, f"the session never got a worktree: {shown}"
        time.sleep(0.1)
    tree = Path(shown["worktree"])
    assert tree in [(home / "worktrees" / session_id).resolve() for home in homes], tree
    assert tree != workspace.resolve()
    assert tree.is_dir()
    assert shown["branch"] == f"orchestrator/{session_id[:8]}"
    return tree


def wait_for_status(http: httpx.Client, session_id: str, *states: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        shown: dict[str, Any] = http.get(f"/api/v1/sessions/{session_id}").json()
        if shown["status"] in states:
            return shown
        time.sleep(0.2)
    pytest.fail(f"session {session_id} never reached {states}: {shown}")


def tasks_of(http: httpx.Client, session_id: str) -> dict[str, dict[str, Any]]:
    page = http.get("/api/v1/tasks", params={"session_id": session_id, "page_size": 100})
    return {task["id"]: task for task in page.json()["items"]}


def check_order(done: list[str], tasks: dict[str, dict[str, Any]]) -> None:
    """Every task was done after the tasks it depends on (summaries excluded)."""
    position = {task_id: n for n, task_id in enumerate(done)}
    for task_id in done:
        for dependency in tasks[task_id]["depends_on"]:
            if dependency in position:
                assert position[dependency] < position[task_id], (
                    f"{tasks[task_id]['title']} ran before {tasks[dependency]['title']}"
                )


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)  # the crash tests run on both
def test_a_plan_runs_to_completed_in_order_through_a_fixing_round(
    tmp_path: Path, backend_env: dict[str, str]
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    (workspace / "README.md").write_text("the operator's own file\n")
    workers: list[WorkerProcess] = []
    with serve(tmp_path, backend_env) as server, server.client() as http:
        server.start()
        started = time.monotonic()
        try:
            for _ in range(2):
                workers.append(
                    WorkerProcess(
                        server.base_url,
                        tmp_path / "worker-home",
                        tmp_path / "workers",
                        "--any-capability",
                        "--command",
                        COMMAND,
                    )
                )
            session_id = start_crud_session(http, workspace, verify_command="test -f fixed.txt")
            final = wait_for_status(http, session_id, "COMPLETED", "FAILED", "PARTIALLY_COMPLETED")
            assert final["status"] == "COMPLETED", (
                final,
                *(worker.output for worker in workers),
            )
        finally:
            for worker in workers:
                worker.kill()
        tasks = tasks_of(http, session_id)
        tree = worktree_of(http, session_id, workspace, tmp_path / "home")
        # The work landed in the session's tree, seeded with the workspace's files; the
        # operator's directory is as it was.
        assert (tree / "README.md").read_text() == "the operator's own file\n"
        assert (tree / "fixed.txt").exists()
        assert [p.name for p in workspace.iterdir()] == ["README.md"]
        done = (tree / "done.log").read_text().split()
        parents = {t["parent_id"] for t in tasks.values()}
        leaves = {task_id for task_id in tasks if task_id not in parents}
        assert sorted(done) == sorted(leaves), "every task once, summaries never"
        assert len(done) == len(set(done))
        check_order(done, tasks)
        assert final["review_round"] == 1
        fixes = [t for t in tasks.values() if t["title"].startswith("Fix what verification")]
        assert len(fixes) == 1
        assert done[-1] == fixes[0]["id"]
        assert all(t["status"] == "COMPLETED" for t in tasks.values())
        print(
            f"\n[engine e2e {(backend_env and 'postgresql') or 'sqlite'}] {len(done)} tasks "
            f"by 2 workers, 1 fixing round, {time.monotonic() - started:.1f} s"
        )


def test_a_killed_orchestrator_resumes_the_session_without_redoing_finished_tasks(
    tmp_path: Path, backend_env: dict[str, str]
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    # On PostgreSQL the restarted process waits for its dead predecessor's ownership
    # lease to run out (SQLite, single-process, resumes at once).
    env = {**backend_env, "SESSION_LEASE_SECONDS": "2"}
    with serve(tmp_path, env) as server, server.client() as http:
        server.start()
        worker = WorkerProcess(
            server.base_url,
            tmp_path / "worker-home",
            tmp_path / "workers",
            "--any-capability",
            "--command",
            COMMAND.replace("sleep 0.2", "sleep 0.5"),
        )
        try:
            session_id = start_crud_session(http, workspace)
            tree = worktree_of(http, session_id, workspace, tmp_path / "home")
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                finished = [
                    t for t in tasks_of(http, session_id).values() if t["status"] == "COMPLETED"
                ]
                if len(finished) >= 2:
                    break
                time.sleep(0.1)
            assert len(finished) >= 2
            server.kill()
            before_kill = {t["id"] for t in finished}
            server.start()  # same database, same port: the worker carries on
            final = wait_for_status(http, session_id, "COMPLETED", "FAILED")
            assert final["status"] == "COMPLETED", (final, worker.output)
        finally:
            worker.kill()
        # The restarted process went on in the same tree.
        assert worktree_of(http, session_id, workspace, tmp_path / "home") == tree
        done = (tree / "done.log").read_text().split()
        for task_id in before_kill:
            assert done.count(task_id) == 1, f"task {task_id} was redone after the restart"
        check_order(done, tasks_of(http, session_id))
        print(
            f"\n[engine restart] {len(before_kill)} tasks finished before SIGKILL, "
            f"{len(done)} runs in all, session COMPLETED"
        )


def test_a_second_orchestrator_takes_over_a_dead_ones_sessions(tmp_path: Path):
    require_redis()
    with temporary_postgres_database("io_takeover") as name:
        shared = {
            "DATABASE_URL": postgres_url_for(name),
            "REDIS_HOST": REDIS_HOST,
            "REDIS_PREFIX": f"test-{uuid.uuid4().hex}",
            "SESSION_LEASE_SECONDS": "2",
        }
        workspace = tmp_path / "repo"
        workspace.mkdir()
        first = serve(tmp_path / "a", shared)
        second = serve(tmp_path / "b", shared)
        with first, second, first.client() as to_first, second.client() as to_second:
            first.start()
            session_id = start_crud_session(to_first, workspace)
            deadline = time.monotonic() + WAIT
            while to_first.get(f"/api/v1/sessions/{session_id}").json()["phase"] != "EXECUTING":
                assert time.monotonic() < deadline, "never planned"
                time.sleep(0.1)
            second.start()
            first.kill()  # the owner dies holding the session
            worker = WorkerProcess(
                second.base_url,
                tmp_path / "worker-home",
                tmp_path / "workers",
                "--any-capability",
                "--command",
                COMMAND,
            )
            try:
                final = wait_for_status(to_second, session_id, "COMPLETED", "FAILED")
                assert final["status"] == "COMPLETED", (final, worker.output)
            finally:
                worker.kill()
            events = to_second.get(
                f"/api/v1/sessions/{session_id}/events", params={"type": "session.taken_over"}
            ).json()["items"]
            assert len(events) == 1, events
            assert events[0]["payload"]["from"] != events[0]["payload"]["to"]
            homes = (tmp_path / "a" / "home", tmp_path / "b" / "home")
            tree = worktree_of(to_second, session_id, workspace, *homes)
            done = (tree / "done.log").read_text().split()
            assert len(done) == len(set(done))
            print(f"\n[engine takeover] taken over by {events[0]['payload']['to']}")


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)  # the crash tests run on both
def test_stopping_a_session_aborts_the_command_in_flight(
    tmp_path: Path, backend_env: dict[str, str]
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    with serve(tmp_path, backend_env) as server, server.client() as http:
        server.start()
        worker = WorkerProcess(
            server.base_url,
            tmp_path / "worker-home",
            tmp_path / "workers",
            "--any-capability",
            "--command",
            "touch started; sleep 60; touch finished",
        )
        try:
            created = http.post(
                "/api/v1/sessions",
                json={
                    "title": "Long job",
                    "initial_prompt": "Do one long thing",
                    "template": "single",
                    "workspace": str(workspace),
                    "auto_start": True,
                },
            )
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]
            tree = worktree_of(http, session_id, workspace, tmp_path / "home")
            deadline = time.monotonic() + WAIT
            while not (tree / "started").exists():
                assert time.monotonic() < deadline, worker.output
                time.sleep(0.1)
            stopped_at = time.monotonic()
            stop = http.post(f"/api/v1/sessions/{session_id}/stop")
            assert stop.status_code == 200, stop.text
            while "aborted" not in worker.output:
                assert time.monotonic() - stopped_at < 15, worker.output
                time.sleep(0.1)
            took = time.monotonic() - stopped_at
            assert worker.process.poll() is None, "the worker itself keeps serving"
        finally:
            worker.kill()
        assert not (tree / "finished").exists()
        assert list(workspace.iterdir()) == []
        [task] = tasks_of(http, session_id).values()
        assert task["status"] == "CANCELLED"
        print(f"\n[engine stop] the command in flight was killed {took:.1f} s after stop")
