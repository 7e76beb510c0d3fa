"""The runtime apart from HTTP, and several processes on one PostgreSQL.

* ``serve --no-runtime`` serves the API but moves no session on; ``serve --no-http``
  (headless, another process) runs the runtime: the session is planned, its tasks are
  leased to a worker that talks to the HTTP-only process, and it completes.
* ``serve --workers 2``: two processes behind one port; a fleet of sessions completes
  with every task done once, and a SIGKILLed ``serve`` takes its processes with it.
* The refusals: nothing to run, a split or several processes on SQLite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..backends import REDIS_HOST, postgres_url_for, require_redis, temporary_postgres_database
from ..cli.test_worker import WorkerProcess
from ..server_process import (
    ServerProcess,
    free_port,
    orchestrator_command,
    orchestrator_env,
    run_cli,
)
from .test_engine_e2e import (
    COMMAND,
    SECRET,
    start_crud_session,
    tasks_of,
    wait_for_status,
    worktree_of,
)

pytestmark = pytest.mark.slow

STOP_SECONDS = 30.0


@pytest.fixture
def postgres_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    require_redis()
    with temporary_postgres_database("io_runtime") as name:
        yield {
            "DATABASE_URL": postgres_url_for(name),
            "REDIS_HOST": REDIS_HOST,
            "REDIS_PREFIX": f"test-{uuid.uuid4().hex}",
            "ORCHESTRATOR_HOME": str(tmp_path / "home"),
            "LOG_LEVEL": "WARNING",
            "ENGINE_ENABLED": "true",
            "ENGINE_TICK_SECONDS": "0.2",
            "AGENT_HEARTBEAT_SECONDS": "1",
            "SESSION_LEASE_SECONDS": "3",
            "SECRET_KEY": SECRET,
        }


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _done_once(http: httpx.Client, session_id: str, workspace: Path, home: Path) -> list[str]:
    tree = worktree_of(http, session_id, workspace, home)
    done = (tree / "done.log").read_text().split()
    assert len(done) == len(set(done)), f"a task was done twice: {done}"
    tasks = tasks_of(http, session_id)
    parents = {task["parent_id"] for task in tasks.values()}
    assert sorted(done) == sorted(t for t in tasks if t not in parents), "summaries never"
    return done


def test_http_without_the_runtime_and_a_headless_runtime_share_the_work(
    tmp_path: Path, postgres_env: dict[str, str]
) -> None:
    workspace = tmp_path / "repo"
    workspace.mkdir()
    headless: subprocess.Popen[bytes] | None = None
    worker: WorkerProcess | None = None
    with ServerProcess(postgres_env, tmp_path / "http", command=("serve", "--no-runtime")) as web:
        run = web.start()
        assert "HTTP only (no runtime)" in run.stderr
        with web.client() as http:
            session_id = start_crud_session(http, workspace)
            time.sleep(2.0)  # ten ticks of an engine, were one running here
            shown = http.get(f"/api/v1/sessions/{session_id}").json()
            assert (shown["status"], shown["phase"], shown["worktree"]) == (
                "RUNNING",
                "PLANNING",
                None,
            )
            assert tasks_of(http, session_id) == {}
            log = tmp_path / "headless.log"
            with log.open("wb") as out:
                headless = subprocess.Popen(
                    orchestrator_command("serve", "--no-http"),
                    env=orchestrator_env(**postgres_env),
                    cwd=tmp_path,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                worker = WorkerProcess(
                    web.base_url,
                    tmp_path / "worker-home",
                    tmp_path / "workers",
                    "--any-capability",
                    "--command",
                    COMMAND,
                )
                final = wait_for_status(http, session_id, "COMPLETED", "FAILED")
                assert final["status"] == "COMPLETED", (final, worker.output, log.read_text())
                _done_once(http, session_id, workspace, tmp_path / "home")
                # Nothing listens for the headless runtime: no port of its own.
                assert "running the runtime only (no HTTP)" in log.read_text()
                headless.send_signal(signal.SIGTERM)
                assert headless.wait(STOP_SECONDS) == 0, log.read_text()
            finally:
                if worker is not None:
                    worker.kill()
                if headless.poll() is None:
                    headless.kill()
                    headless.wait()


def test_two_processes_serve_one_port_and_die_together(
    tmp_path: Path, postgres_env: dict[str, str]
) -> None:
    workspace = tmp_path / "repo"
    workspace.mkdir()
    worker: WorkerProcess | None = None
    with ServerProcess(postgres_env, tmp_path / "server", command=("serve", "--workers", "2")) as s:
        run = s.start()
        assert " - 2 processes - " in run.stderr
        processes = _children(run.process.pid)
        deadline = time.monotonic() + 30
        while len(processes) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            processes = _children(run.process.pid)
        assert len(processes) >= 2, processes
        try:
            with s.client() as http:
                sessions = [start_crud_session(http, workspace) for _ in range(4)]
                worker = WorkerProcess(
                    s.base_url,
                    tmp_path / "worker-home",
                    tmp_path / "workers",
                    "--any-capability",
                    "--concurrency",
                    "4",
                    "--command",
                    COMMAND,
                )
                for session_id in sessions:
                    final = wait_for_status(http, session_id, "COMPLETED", "FAILED")
                    assert final["status"] == "COMPLETED", (final, worker.output)
                    _done_once(http, session_id, workspace, tmp_path / "home")
        finally:
            if worker is not None:
                worker.kill()
        s.kill()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in processes), "a process outlived its serve"


@pytest.mark.parametrize(
    ("args", "backend", "says"),
    [
        (("--no-runtime", "--no-http"), "sqlite", "leaves nothing to run"),
        (("--no-runtime",), "sqlite", "SQLite is served by one process"),
        (("--no-http",), "sqlite", "SQLite is served by one process"),
        (("--workers", "2"), "sqlite", "--workers needs PostgreSQL"),
        (("--no-http", "--workers", "2"), "postgresql", "start `serve --no-http` several"),
    ],
)
def test_what_cannot_be_split_is_refused_with_a_reason(
    tmp_path: Path, args: tuple[str, ...], backend: str, says: str
) -> None:
    env = {"ORCHESTRATOR_HOME": str(tmp_path / "home")}
    if backend == "postgresql":
        env["DATABASE_URL"] = postgres_url_for("test")  # refused before it is reached
    finished = run_cli(
        "serve", "--port", str(free_port()), *args, env=orchestrator_env(**env), cwd=tmp_path
    )
    assert finished.returncode == 2, finished.stderr
    assert says in " ".join(finished.stderr.split()), finished.stderr
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


def test_a_worker_process_with_a_dead_parent_exits(tmp_path: Path) -> None:
    """The race ``_die_with_parent`` closes: a process whose ``serve`` died before it
    could ask to die with it exits at once instead of serving on."""
    code = (
        "import os\n"
        "from industrial_orchestrator.cli.serve_workers import WORKER_ENVIRONMENT, "
        "app_from_environment\n"
        "os.environ[WORKER_ENVIRONMENT['parent']] = str(os.getppid() + 1000000)\n"
        "os.environ[WORKER_ENVIRONMENT['host']] = '127.0.0.1'\n"
        "app_from_environment()\n"
        "print('served on')\n"
    )
    python = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "python"
    if not python.is_file():
        python = Path(orchestrator_command()[0]).with_name("python")
    finished = subprocess.run(
        [str(python), "-c", code],
        env=orchestrator_env(ORCHESTRATOR_HOME=str(tmp_path / "home")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "served on" not in finished.stdout
