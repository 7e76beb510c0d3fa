"""``orchestrator worker``: a real worker process serving a real ``orchestrator serve`` on
SQLite. It runs its command for each task it pulls, in the task's workspace with the
prompt on stdin, completes the task on exit status 0 and fails it with the output's tail
otherwise, ships the output to the session's logs, kills a command past the task's
timeout, and leaves cleanly on SIGTERM. Plus the pure helpers, case by case."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from industrial_orchestrator.cli.eap_worker.settings import capabilities_for, known_capabilities
from industrial_orchestrator.cli.eap_worker.usage import USAGE_FILE_MAX_BYTES, read_usage
from industrial_orchestrator.cli.eap_worker.workspace import choose_workspace, command_env

from ..server_process import ServerProcess, orchestrator_command, orchestrator_env, run_cli
from .helpers import API, stored_events, wait_for

Json = dict[str, Any]
WAIT = 20.0
STOP_TIMEOUT = 15.0


class WorkerProcess:
    """``orchestrator worker`` in the background; stdout and stderr go to files."""

    def __init__(self, url: str, home: Path, cwd: Path, *args: str) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.name = f"worker-{uuid.uuid4().hex[:8]}"
        stamp = time.monotonic_ns()
        self.stdout_path = cwd / f"{self.name}-{stamp}.stdout"
        self.stderr_path = cwd / f"{self.name}-{stamp}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                orchestrator_command("worker", "--url", url, "--name", self.name, *args),
                env=orchestrator_env(ORCHESTRATOR_HOME=str(home)),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    @property
    def output(self) -> str:
        return (
            f"--- worker stdout ---\n{self.stdout_path.read_text(errors='replace')}"
            f"--- worker stderr ---\n{self.stderr_path.read_text(errors='replace')}"
        )

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker ignored SIGTERM for {STOP_TIMEOUT}s\n{self.output}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)


StartWorker = Callable[..., WorkerProcess]


def _server(root: Path, **env: str) -> ServerProcess:
    settings = {"ORCHESTRATOR_HOME": str(root / "home"), "LOG_LEVEL": "WARNING"}
    return ServerProcess({**settings, **env}, root / "server")


@pytest.fixture(scope="module")
def eap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One attempt per task, so a failure is final; a beat every second."""
    root = tmp_path_factory.mktemp("worker-server")
    with _server(root, TASK_MAX_ATTEMPTS="1", AGENT_HEARTBEAT_SECONDS="1") as server:
        server.start()
        yield server


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The worker's ORCHESTRATOR_HOME: where workspaces of tasks without one go."""
    return tmp_path / "worker-home"


@pytest.fixture
def start_worker(tmp_path: Path, home: Path) -> Iterator[StartWorker]:
    started: list[WorkerProcess] = []

    def start(server: ServerProcess, *args: str) -> WorkerProcess:
        worker = WorkerProcess(server.base_url, home, tmp_path / "worker-cwd", *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def _create_task(http: httpx.Client, title: str, prompt: str, **fields: Any) -> Json:
    body = {
        "title": title,
        "task_type": "code_generation",
        "required_capabilities": ["code_generation"],
        "description": prompt,
        **fields,
    }
    created = http.post(f"{API}/tasks", json=body)
    assert created.status_code == 201, created.text
    ready = http.patch(f"{API}/tasks/{created.json()['id']}", json={"status": "READY"})
    assert ready.status_code == 200, ready.text
    task: Json = ready.json()
    return task


def _task(http: httpx.Client, task_id: str) -> Json:
    response = http.get(f"{API}/tasks/{task_id}")
    assert response.status_code == 200, response.text
    task: Json = response.json()
    return task


def _attempts(http: httpx.Client, task_id: str) -> list[Json]:
    response = http.get(f"{API}/tasks/{task_id}/attempts")
    assert response.status_code == 200, response.text
    attempts: list[Json] = response.json()
    return attempts


def _wait_status(
    http: httpx.Client, task_ids: list[str], status: str, worker: WorkerProcess
) -> list[Json]:
    deadline = time.monotonic() + WAIT
    while True:
        tasks = [_task(http, task_id) for task_id in task_ids]
        if all(task["status"] == status for task in tasks):
            return tasks
        if time.monotonic() > deadline or worker.process.poll() is not None:
            states = {task["id"]: task["status"] for task in tasks}
            pytest.fail(f"tasks not all {status}: {states}\n{worker.output}")
        time.sleep(0.1)


def _said(worker: WorkerProcess, text: str) -> None:
    """Wait for ``text`` in the worker's output: it prints what became of a task once
    the server has answered, which may be after a test saw the new status."""
    wait_for(lambda: text in worker.output, f"the worker to print {text!r}")


def _agent_names(http: httpx.Client) -> set[str]:
    response = http.get(f"{API}/agents")
    assert response.status_code == 200, response.text
    return {agent["name"] for agent in response.json()["items"]}


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies, waiting for init, do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state not in ("Z", "X"):
            return True
    return False


# -- against a real server ----------------------------------------------------------------------


@pytest.mark.slow
def test_runs_the_command_per_task_in_its_workspace_with_the_prompt_on_stdin(
    eap_server: ServerProcess, start_worker: StartWorker, home: Path
):
    with eap_server.client() as http:
        tasks = [_create_task(http, f"Task {n}", f"PROMPT-{n}") for n in range(3)]
        worker = start_worker(
            eap_server,
            "--any-capability",
            "--command",
            "cat > prompt.txt; echo done $ORCHESTRATOR_TASK_ID",
        )
        done = _wait_status(http, [t["id"] for t in tasks], "COMPLETED", worker)

        for n, task in enumerate(done):
            workspace = home / "worker" / task["id"]
            assert (workspace / "prompt.txt").read_text() == f"PROMPT-{n}"
            assert task["result_summary"] == f"done {task['id']}"
            [attempt] = _attempts(http, task["id"])
            assert attempt["outcome"] == "completed"
            assert attempt["output"] == {"exit_code": 0, "summary": f"done {task['id']}"}
            assert attempt["execution_time_ms"] is not None
        assert worker.process.poll() is None, worker.output
        for task in done:
            _said(worker, f"[{task['id'][:8]}] done {task['id']}")
            _said(worker, f"task {task['id']} completed")
        assert worker.terminate() == 0, worker.output


# Longer than the few seconds a result used to be retried for.
DOWNTIME_SECONDS = 10.0


@pytest.mark.slow
def test_a_result_finished_while_the_orchestrator_is_down_is_taken_when_it_is_back(
    tmp_path: Path, start_worker: StartWorker
):
    with _server(tmp_path, AGENT_HEARTBEAT_SECONDS="1") as server:
        server.start()
        with server.client() as http:
            task = _create_task(http, "Outlive a restart", "PROMPT")
        worker = start_worker(server, "--any-capability", "--command", "sleep 2; echo survived")
        _said(worker, f"task {task['id']} attempt 1")
        server.kill()  # while the command runs: its result finds nobody to take it
        time.sleep(DOWNTIME_SECONDS)
        server.start()  # same port, same home
        with server.client() as http:
            [done] = _wait_status(http, [task["id"]], "COMPLETED", worker)
        assert done["result_summary"] == "survived"
        _said(worker, f"task {task['id']} completed")
        assert "not recorded" not in worker.output
        assert worker.terminate() == 0, worker.output


@pytest.mark.slow
def test_a_failing_command_fails_the_attempt_with_the_output_tail(
    eap_server: ServerProcess, start_worker: StartWorker
):
    with eap_server.client() as http:
        task = _create_task(http, "Doomed", "do not even try")
        worker = start_worker(
            eap_server,
            "--capability",
            "code_generation",
            "--command",
            "echo step one; echo step two; echo it broke >&2; exit 3",
        )
        [failed] = _wait_status(http, [task["id"]], "FAILED", worker)

        [attempt] = _attempts(http, task["id"])
        assert attempt["outcome"] == "failed"
        assert attempt["output"]["exit_code"] == 3
        # Two pipes: the order between stdout and stderr is not fixed, within each it is.
        assert attempt["error"].index("step one") < attempt["error"].index("step two")
        assert sorted(attempt["error"].splitlines()) == ["it broke", "step one", "step two"]
        assert attempt["error"] in failed["result_summary"]
        _said(worker, f"task {task['id']} failed")
        assert worker.terminate() == 0, worker.output


@pytest.mark.slow
def test_sigterm_kills_the_command_reports_it_failed_and_deregisters(
    eap_server: ServerProcess, start_worker: StartWorker, home: Path
):
    with eap_server.client() as http:
        task = _create_task(http, "Endless", "wait forever")
        worker = start_worker(
            eap_server,
            "--any-capability",
            "--concurrency",
            "2",
            "--command",
            "echo $$ > pgid; echo started; sleep 60",
        )
        pgid_file = home / "worker" / task["id"] / "pgid"
        wait_for(lambda: "] started" in worker.output, "the command to start")
        assert worker.name in _agent_names(http)
        pgid = int(pgid_file.read_text())
        assert group_alive(pgid)

        assert worker.terminate() == 0, worker.output

        assert not group_alive(pgid), "the command's process group outlived the worker"
        assert worker.name not in _agent_names(http)
        [attempt] = _attempts(http, task["id"])
        assert (attempt["outcome"], attempt["error"]) == ("failed", "worker stopped")
        assert _task(http, task["id"])["status"] == "FAILED"
        assert "SIGTERM: stopping" in worker.output
        assert "deregistered" in worker.output


@pytest.mark.slow
def test_logs_go_to_the_tasks_session(eap_server: ServerProcess, start_worker: StartWorker):
    with eap_server.client() as http:
        session = http.post(
            f"{API}/sessions",
            json={"title": "Logged", "initial_prompt": "log it", "auto_start": True},
        )
        assert session.status_code == 201, session.text
        session_id = session.json()["id"]
        task = _create_task(http, "Chatty", "say things", session_id=session_id)
        worker = start_worker(
            eap_server,
            "--any-capability",
            "--command",
            "echo out $ORCHESTRATOR_SESSION_ID; echo err $ORCHESTRATOR_TASK_TYPE >&2",
        )
        _wait_status(http, [task["id"]], "COMPLETED", worker)

        def logged() -> list[tuple[str, str]]:
            return [
                (e["payload"]["stream"], e["payload"]["text"])
                for e in stored_events(http, session_id)
                if e["type"] == "session.log"
            ]

        # Shipped before the result was reported, so already stored.
        assert sorted(logged()) == [
            ("stderr", "err code_generation\n"),
            ("stdout", f"out {session_id}\n"),
        ]
        assert worker.terminate() == 0, worker.output


@pytest.mark.slow
def test_a_command_past_the_task_timeout_is_killed(
    tmp_path: Path, start_worker: StartWorker, home: Path
):
    with _server(tmp_path / "timeout", TASK_TIMEOUT_SECONDS="1", TASK_MAX_ATTEMPTS="1") as server:
        server.start()
        with server.client() as http:
            task = _create_task(http, "Slow", "take your time")
            worker = start_worker(
                server, "--any-capability", "--command", "echo $$ > pgid; echo waiting; sleep 60"
            )
            _wait_status(http, [task["id"]], "FAILED", worker)

            [attempt] = _attempts(http, task["id"])
            assert (attempt["outcome"], attempt["error"]) == ("failed", "timed out after 1 s")
            assert attempt["output"]["summary"] == "waiting"
            pgid = int((home / "worker" / task["id"] / "pgid").read_text())
            assert not group_alive(pgid)
            assert worker.process.poll() is None, worker.output
            assert worker.terminate() == 0, worker.output


@pytest.mark.slow
def test_the_usage_the_command_reports_goes_with_the_result(
    eap_server: ServerProcess, start_worker: StartWorker, home: Path
):
    with eap_server.client() as http:
        reported, broken = (_create_task(http, title, "spend") for title in ("Paid", "Garbled"))
        worker = start_worker(
            eap_server,
            "--any-capability",
            "--command",
            # Where the file is, for the test; then the report (a broken one for one task).
            'dirname "$ORCHESTRATOR_USAGE_FILE" > private-dir; '
            f'if [ "$ORCHESTRATOR_TASK_ID" = {broken["id"]} ]; '
            'then echo "{oops" > "$ORCHESTRATOR_USAGE_FILE"; '
            """else echo '{"tokens_used": 42, "cost_usd": 0.5}' > "$ORCHESTRATOR_USAGE_FILE"; fi""",
        )
        _wait_status(http, [reported["id"], broken["id"]], "COMPLETED", worker)

        [attempt] = _attempts(http, reported["id"])
        assert (attempt["tokens_used"], attempt["cost_usd"]) == (42, 0.5)
        [unreported] = _attempts(http, broken["id"])
        assert (unreported["outcome"], unreported["tokens_used"], unreported["cost_usd"]) == (
            "completed",
            0,
            0.0,
        )
        _said(worker, f"warning: task {broken['id']}: usage report ignored: not JSON")
        _said(worker, "[42 tokens, $0.50]")
        for task in (reported, broken):
            workspace = home / "worker" / task["id"]
            private = Path((workspace / "private-dir").read_text().strip())
            assert workspace not in private.parents, "the usage file is outside the workspace"
            assert not private.exists(), "the task's private directory was removed"
        assert worker.terminate() == 0, worker.output


@pytest.mark.slow
def test_without_a_capability_it_refuses_to_start(tmp_path: Path):
    result = run_cli(
        "worker",
        "--name",
        "nothing-to-offer",
        "--command",
        "true",
        "--url",
        "http://127.0.0.1:9",
        env=orchestrator_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.replace("│", " ").split())
    assert "give at least one --capability CAP" in message
    assert "--any-capability" in message


# -- the helpers ----------------------------------------------------------------------------------


def test_any_capability_covers_the_templates_and_task_types_plus_the_given_ones():
    capabilities = capabilities_for(["Rust_Expert "], any_capability=True)
    assert set(capabilities) == known_capabilities() | {"rust_expert"}
    assert {"code_generation", "testing", "system_design", "security_audit"} <= set(capabilities)
    assert capabilities_for([" Python", "python", "testing"], any_capability=False) == (
        "python",
        "testing",
    )


@pytest.mark.parametrize("given", [[], ["  "]])
def test_no_capability_is_a_usage_error(given: list[str]):
    with pytest.raises(typer.BadParameter, match="--any-capability"):
        capabilities_for(given, any_capability=False)


def test_the_tasks_workspace_is_used_when_it_is_a_directory_here(tmp_path: Path):
    task_id = str(uuid.uuid4())
    chosen = choose_workspace({"workspace": str(tmp_path)}, task_id, tmp_path / "home")
    assert chosen == (tmp_path, "the task's workspace")
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("context", "why"),
    [
        ({}, "the task names no workspace"),
        ({"workspace": None}, "the task names no workspace"),
        ({"workspace": "/no/such/dir"}, "the task's workspace /no/such/dir is not a directory"),
    ],
)
def test_otherwise_a_worker_directory_is_created(tmp_path: Path, context: Json, why: str):
    task_id = str(uuid.uuid4())
    path, reason = choose_workspace(context, task_id, tmp_path / "home")
    assert path == tmp_path / "home" / "worker" / task_id
    assert path.is_dir()
    assert why in reason


def test_a_task_id_that_is_not_a_uuid_never_reaches_the_path(tmp_path: Path):
    with pytest.raises(ValueError, match="badly formed"):
        choose_workspace({}, "../../etc", tmp_path)


def test_the_command_gets_the_task_in_its_environment_but_not_the_registration_token():
    assignment = {
        "task_id": "t-1",
        "session_id": None,
        "task_type": "testing",
        "title": "Test it",
        "attempt": 2,
        "input_data": "Write\0 tests",
    }
    env = command_env(
        assignment,
        {"PATH": "/bin", "AGENT_REGISTRATION_TOKEN": "secret"},
        Path("/tmp/private/usage.json"),
    )
    assert env == {
        "PATH": "/bin",
        "ORCHESTRATOR_TASK_ID": "t-1",
        "ORCHESTRATOR_SESSION_ID": "",
        "ORCHESTRATOR_TASK_TYPE": "testing",
        "ORCHESTRATOR_TASK_TITLE": "Test it",
        "ORCHESTRATOR_TASK_ATTEMPT": "2",
        "ORCHESTRATOR_TASK_PROMPT": "Write tests",
        "ORCHESTRATOR_USAGE_FILE": "/tmp/private/usage.json",
    }


@pytest.mark.parametrize(
    ("content", "fields", "problem"),
    [
        ('{"tokens_used": 42, "cost_usd": 0.5}', {"tokens_used": 42, "cost_usd": 0.5}, None),
        ('{"tokens_used": 0}', {"tokens_used": 0}, None),
        ('{"cost_usd": 3, "model": "x"}', {"cost_usd": 3.0}, None),
        ('{"tokens_used": 7, "cost_usd": -1}', {"tokens_used": 7}, "cost_usd -1 is not a number"),
        ('{"tokens_used": "7", "cost_usd": 1.5}', {"cost_usd": 1.5}, "tokens_used '7' is not"),
        ('{"tokens_used": 4.0}', {}, "tokens_used 4.0 is not an integer >= 0"),
        ('{"tokens_used": true}', {}, "tokens_used True is not an integer"),
        ('{"tokens_used": -3}', {}, "tokens_used -3 is not an integer >= 0"),
        ('{"tokens_used": 1000000001}', {}, "tokens_used 1000000001 is over 1000000000"),
        ('{"cost_usd": NaN}', {}, "cost_usd nan is not a number >= 0"),
        ('{"cost_usd": Infinity}', {}, "cost_usd inf is over"),
        ('{"cost_usd": 2e6}', {}, "cost_usd 2000000.0 is over 1e+06"),
        ('{"cost_usd": null}', {}, "cost_usd None is not a number"),
        ("{}", {}, "holds neither tokens_used nor cost_usd"),
        ("[42]", {}, "a JSON list, not an object"),
        ("", {}, "not JSON"),
        ("tokens: 42", {}, "not JSON"),
    ],
)
def test_the_usage_file_is_read_field_by_field(
    tmp_path: Path, content: str, fields: Json, problem: str | None
):
    path = tmp_path / "usage.json"
    path.write_text(content)
    usage = read_usage(path)
    assert usage.fields == fields
    if problem is None:
        assert usage.problems == ()
    else:
        [found] = usage.problems
        assert found.startswith(problem), found


def test_no_usage_file_is_no_usage_and_no_problem(tmp_path: Path):
    usage = read_usage(tmp_path / "usage.json")
    assert (usage.fields, usage.problems) == ({}, ())


def test_a_usage_file_that_cannot_be_read_as_a_small_regular_file_is_a_problem(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # a plain read would wait forever for a writer
    link = tmp_path / "link"
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"tokens_used": 1}))
    link.symlink_to(target)
    huge = tmp_path / "huge"
    huge.write_text(json.dumps({"tokens_used": 1, "padding": "x" * USAGE_FILE_MAX_BYTES}))
    directory = tmp_path / "dir"
    directory.mkdir()
    problems = {
        name: read_usage(path).problems
        for name, path in [("fifo", fifo), ("link", link), ("huge", huge), ("dir", directory)]
    }
    assert problems == {
        "fifo": ("not a regular file",),
        "link": (problems["link"][0],),
        "huge": (f"larger than {USAGE_FILE_MAX_BYTES} bytes",),
        "dir": ("not a regular file",),
    }
    assert problems["link"][0].startswith("cannot read it: ")
    assert all(read_usage(path).fields == {} for path in (fifo, link, huge, directory))
