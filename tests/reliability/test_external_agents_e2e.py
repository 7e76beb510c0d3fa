"""The External Agent Protocol end to end: a real ``orchestrator serve`` on PostgreSQL and
real agent processes (``examples/eap_agent.py``) pulling its tasks over HTTP.

1. Two agents drain a queue together: every task is done exactly once, by one of them,
   with one artifact, and both did their share.
2. A zombie: an agent takes a task and goes silent past its lease; a healthy agent takes
   the task over and completes it; the zombie's late result is refused (409) and changes
   nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..api.helpers import API
from ..backends import postgres_url_for, temporary_postgres_database
from ..server_process import ServerProcess

pytestmark = pytest.mark.slow

AGENT_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "eap_agent.py"
REGISTRATION_TOKEN = "e2e-registration-token"
SECRET_KEY = "e2e-secret-key-of-at-least-thirty-two-characters"
CAPABILITIES = ["python"]
GRACEFUL_EXIT = (0, -signal.SIGTERM)
Json = dict[str, Any]


@dataclass
class AgentProcess:
    """One ``eap_agent.py`` subprocess; its stdout (one JSON event per line) goes to a file."""

    name: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def events(self, kind: str | None = None) -> list[Json]:
        found = []
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if kind is None or event.get("event") == kind:
                found.append(event)
        return found

    @property
    def output(self) -> str:
        return (
            f"--- {self.name} stdout ---\n{self.stdout_path.read_text(errors='replace')}"
            f"--- {self.name} stderr ---\n{self.stderr_path.read_text(errors='replace')}"
        )

    def wait_for(self, kind: str, timeout: float) -> Json:
        """The first event of ``kind``, failing when the agent exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.events(kind):
                return found[0]
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited before {kind!r}\n{self.output}")
            time.sleep(0.05)
        pytest.fail(f"no {kind!r} from {self.name} within {timeout}s\n{self.output}")

    @property
    def agent_id(self) -> str:
        return str(self.wait_for("registered", 15)["agent_id"])

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM (the agent deregisters), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout)


class Fleet:
    """Starts agent processes against ``base_url``; ``close()`` stops every one of them."""

    def __init__(self, base_url: str, workdir: Path) -> None:
        self.base_url = base_url
        self.workdir = workdir
        self.agents: list[AgentProcess] = []

    def start(self, name: str, *options: str) -> AgentProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        stdout_path = self.workdir / f"{name}.stdout"
        stderr_path = self.workdir / f"{name}.stderr"
        command = [
            sys.executable,
            str(AGENT_SCRIPT),
            "--url",
            self.base_url,
            "--name",
            name,
            "--capabilities",
            ",".join([*CAPABILITIES, "testing"]),
            "--registration-token",
            REGISTRATION_TOKEN,
            *options,
        ]
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.workdir
            )
        agent = AgentProcess(name, process, stdout_path, stderr_path)
        self.agents.append(agent)
        return agent

    def check_alive(self) -> None:
        for agent in self.agents:
            if agent.process.poll() is not None:
                pytest.fail(f"{agent.name} exited early\n{agent.output}")

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture
def database() -> Iterator[str]:
    with temporary_postgres_database("io_test_eap") as name:
        yield name


def server_for(database: str, tmp_path: Path, **settings: str) -> ServerProcess:
    env = {
        "DATABASE_URL": postgres_url_for(database),
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "SECRET_KEY": SECRET_KEY,
        "AGENT_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    return ServerProcess(env, tmp_path / "server")


def server_errors(server: ServerProcess) -> list[str]:
    """Each error the server logged: the request's path, the exception and its SQL."""
    errors = []
    for run in server.runs:
        for line in (run.stdout + run.stderr).splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                if "Traceback" in line:
                    errors.append(line)
                continue
            if entry.get("level") not in ("error", "critical") and "exception" not in entry:
                continue
            trace = str(entry.get("exception", "")).splitlines()
            raised = [t for t in trace if re.match(r"[\w.]+(Error|Exception)\b", t)]
            sql = [t[:120] for t in trace if t.startswith("[SQL:")]
            errors.append(
                " ".join([str(entry.get("path", entry.get("event"))), *raised[-1:], *sql])
            )
    return errors


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    return response.json()


def create_tasks(http: httpx.Client, count: int, prefix: str) -> list[Json]:
    """``count`` PENDING tasks that agents with ``CAPABILITIES`` can do."""
    body = {"task_type": "code_generation", "required_capabilities": CAPABILITIES}
    return [
        _ok(http.post(f"{API}/tasks", json={**body, "title": f"{prefix} {i}"}), 201)
        for i in range(count)
    ]


def make_ready(http: httpx.Client, tasks: list[Json]) -> None:
    for task in tasks:
        assert (
            _ok(http.patch(f"{API}/tasks/{task['id']}", json={"status": "READY"}))["status"]
            == "READY"
        )


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, check: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        check()
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


def completed_count(http: httpx.Client) -> int:
    page = _ok(http.get(f"{API}/tasks", params={"status": "COMPLETED", "page_size": 1}))
    return int(page["total"])


def artifact_file(home: Path, task_id: str) -> Path:
    """Where a task outside any session has its artifacts written."""
    return home / "artifacts" / task_id / "results" / f"{task_id}.md"


def test_two_agents_drain_the_queue_each_task_done_once(database: str, tmp_path: Path):
    count = 30
    with server_for(database, tmp_path, AGENT_HEARTBEAT_SECONDS="1") as server:
        server.start()
        with Fleet(server.base_url, tmp_path / "agents") as fleet, server.client() as http:
            tasks = create_tasks(http, count, "e2e task")
            a = fleet.start("AGENT-E2E-A", "--work-seconds", "0.05")
            b = fleet.start("AGENT-E2E-B", "--work-seconds", "0.05")
            ids = {a.name: a.agent_id, b.name: b.agent_id}  # both registered, now polling

            started = time.monotonic()
            make_ready(http, tasks)
            wait_until(
                lambda: completed_count(http) == count, 30, "all tasks COMPLETED", fleet.check_alive
            )
            seconds = time.monotonic() - started

            # While the agents are still registered (leaving removes their record).
            records = {name: _ok(http.get(f"{API}/agents/{i}")) for name, i in ids.items()}
            listing = _ok(http.get(f"{API}/tasks", params={"page_size": 100}))
            attempts = {t["id"]: _ok(http.get(f"{API}/tasks/{t['id']}/attempts")) for t in tasks}
            artifacts = {t["id"]: _ok(http.get(f"{API}/tasks/{t['id']}/artifacts")) for t in tasks}

            # Leaving on SIGTERM: both deregister and exit cleanly.
            for agent in (a, b):
                assert agent.stop() in GRACEFUL_EXIT, agent.output
                assert agent.wait_for("deregistered", 1)["status_code"] == 204
                assert http.get(f"{API}/agents/{ids[agent.name]}").status_code == 404

    successes = {name: record["success_count"] for name, record in records.items()}
    print(
        f"\nEAP e2e: {count} tasks, 2 agents "
        + ", ".join(f"{name}={n}" for name, n in sorted(successes.items()))
        + f", drained in {seconds:.2f}s ({count / seconds:.1f} tasks/s)"
    )
    assert server_errors(server) == []
    assert listing["total"] == count
    assert Counter(t["status"] for t in listing["items"]) == {"COMPLETED": count}

    name_of = {agent_id: name for name, agent_id in ids.items()}
    done_by: Counter[str] = Counter()
    for task in tasks:
        tries = attempts[task["id"]]
        # Healthy agents, a 90 s lease: one attempt each, never expired or repeated.
        assert [(t["attempt"], t["outcome"]) for t in tries] == [(1, "completed")], tries
        agent_id = tries[0]["agent_id"]
        assert agent_id in name_of
        done_by[name_of[agent_id]] += 1

        stored = artifacts[task["id"]]
        path = f"results/{task['id']}.md"
        assert [(s["attempt"], s["path"]) for s in stored] == [(1, path)]
        written = artifact_file(tmp_path / "home", task["id"]).read_bytes()
        assert hashlib.sha256(written).hexdigest() == stored[0]["sha256"]
        assert task["title"] in written.decode()
        assert name_of[agent_id] in written.decode()

    assert all(n > 0 for n in successes.values()), successes
    assert sum(successes.values()) == count
    assert successes == dict(done_by)
    for agent in (a, b):
        done = agent.events("done")
        assert len(done) == successes[agent.name]
        assert {event["status_code"] for event in done} == {200}
        assert not agent.events("lease_lost")
        assert not agent.events("result_refused")


def test_a_zombie_result_is_refused_after_the_task_moved_on(database: str, tmp_path: Path):
    stall = 4.0
    fast = {"TASK_LEASE_SECONDS": "1", "AGENT_HEARTBEAT_SECONDS": "0.3", "REAPER_SECONDS": "0.2"}
    with server_for(database, tmp_path, **fast) as server:
        server.start()
        with Fleet(server.base_url, tmp_path / "agents") as fleet, server.client() as http:
            [task] = create_tasks(http, 1, "zombie task")
            make_ready(http, [task])
            started = time.monotonic()
            zombie = fleet.start(
                "AGENT-ZOMBIE",
                "--stall-after",
                "1",
                "--stall-seconds",
                str(stall),
                "--max-tasks",
                "1",
            )
            zombie_id = zombie.agent_id
            taken = zombie.wait_for("task", 15)
            assert (taken["task_id"], taken["attempt"]) == (task["id"], 1)
            zombie.wait_for("stalling", 5)

            healthy = fleet.start("AGENT-HEALTHY", "--work-seconds", "0.05")
            healthy_id = healthy.agent_id
            done = healthy.wait_for("done", 15)
            assert (done["task_id"], done["attempt"], done["status_code"]) == (task["id"], 2, 200)
            handed_on = time.monotonic() - started

            # The zombie wakes up, reports for attempt 1, is refused, and leaves.
            assert zombie.process.wait(stall + 10) == 0, zombie.output
            refused = zombie.wait_for("lease_lost", 1)

            final = _ok(http.get(f"{API}/tasks/{task['id']}"))
            attempts = _ok(http.get(f"{API}/tasks/{task['id']}/attempts"))
            artifacts = _ok(http.get(f"{API}/tasks/{task['id']}/artifacts"))
            healthy_record = _ok(http.get(f"{API}/agents/{healthy_id}"))
            seconds = time.monotonic() - started

    assert (refused["task_id"], refused["attempt"], refused["status_code"]) == (task["id"], 1, 409)
    assert not zombie.events("done")
    assert (final["status"], final["attempt"]) == ("COMPLETED", 2)
    assert [(t["attempt"], t["agent_id"], t["outcome"]) for t in attempts] == [
        (1, zombie_id, "expired"),
        (2, healthy_id, "completed"),
    ]
    assert healthy_record["success_count"] == 1
    # Only the healthy agent's work was kept: one artifact, of attempt 2, with its content.
    assert [(s["attempt"], s["path"]) for s in artifacts] == [(2, f"results/{task['id']}.md")]
    written = artifact_file(tmp_path / "home", task["id"]).read_bytes()
    assert hashlib.sha256(written).hexdigest() == artifacts[0]["sha256"]
    assert healthy.name in written.decode()
    assert zombie.name not in written.decode()
    assert server_errors(server) == []

    print(
        f"\nEAP zombie: handed on to {healthy.name} after {handed_on:.2f}s; "
        f"{zombie.name} refused with 409 after its {stall:g}s stall; {seconds:.2f}s in all"
    )


def test_a_frozen_agent_thawed_after_its_lease_is_refused_and_the_task_done_once(
    database: str, tmp_path: Path
):
    """SIGSTOP: the agent process is frozen mid-task (no heartbeat, no thread runs) past
    its lease; SIGCONT: it wakes up believing it still holds the task. Every late call it
    makes is refused, and the task is recorded once, by the agent that took it over."""
    fast = {"TASK_LEASE_SECONDS": "1", "AGENT_HEARTBEAT_SECONDS": "0.3", "REAPER_SECONDS": "0.2"}
    with server_for(database, tmp_path, **fast) as server:
        server.start()
        with Fleet(server.base_url, tmp_path / "agents") as fleet, server.client() as http:
            [task] = create_tasks(http, 1, "frozen task")
            make_ready(http, [task])
            frozen = fleet.start("AGENT-FROZEN", "--work-seconds", "1.5", "--max-tasks", "1")
            frozen_id = frozen.agent_id
            taken = frozen.wait_for("task", 15)
            assert (taken["task_id"], taken["attempt"]) == (task["id"], 1)
            frozen.process.send_signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            try:
                healthy = fleet.start("AGENT-THAWED-OUT", "--work-seconds", "0.05")
                done = healthy.wait_for("done", 15)
                assert (done["task_id"], done["attempt"]) == (task["id"], 2)
                handed_on = time.monotonic() - stopped_at
            finally:
                frozen.process.send_signal(signal.SIGCONT)
            assert frozen.process.wait(20) == 0, frozen.output
            refused = frozen.wait_for("lease_lost", 1)
            final = _ok(http.get(f"{API}/tasks/{task['id']}"))
            attempts = _ok(http.get(f"{API}/tasks/{task['id']}/attempts"))
            artifacts = _ok(http.get(f"{API}/tasks/{task['id']}/artifacts"))

    assert (refused["task_id"], refused["attempt"], refused["status_code"]) == (task["id"], 1, 409)
    assert not frozen.events("done")
    assert (final["status"], final["attempt"]) == ("COMPLETED", 2)
    assert [(t["attempt"], t["agent_id"], t["outcome"]) for t in attempts] == [
        (1, frozen_id, "expired"),
        (2, healthy.agent_id, "completed"),
    ]
    assert [s["attempt"] for s in artifacts] == [2]
    assert server_errors(server) == []
    print(
        f"\n[frozen agent] SIGSTOPped holding attempt 1; attempt 2 done by another agent "
        f"{handed_on:.2f} s later; after SIGCONT its late result was refused with 409; "
        f"task recorded once"
    )
