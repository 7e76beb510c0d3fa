"""The side-effect ledger against real crashes: a real ``orchestrator serve`` killed by its
own failpoint between recording an effect and marking it done (or just before doing
it), then started again. No effect is done twice, none is lost.

* A task's files, killed after they were written: after the restart they are found on
  disk as delivered and left alone (same inode, same mtime); the entry is DONE.
* The same, killed before they were written: the restart writes them, once.
* A checkpoint's commit, killed after the commit and before the checkpoint was recorded:
  the restart finds the commit by its key; the branch has it once, the checkpoint names it.

The test is the agent (EAP over HTTP); the session is planned as a single task.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from industrial_orchestrator.cli.eap_worker.settings import known_capabilities

from ..backends import REDIS_HOST, postgres_url_for, require_redis, temporary_postgres_database
from ..server_process import ServerProcess
from .test_engine_e2e import wait_for_status, worktree_of

pytestmark = pytest.mark.slow

SECRET = "effect-ledger-secret-key-0123456789abcdef"
WAIT = 30.0
FILE = "notes/result.txt"
CONTENT = "delivered once\n"
Json = dict[str, Any]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    require_redis()
    with temporary_postgres_database("io_effects") as name:
        yield {
            "DATABASE_URL": postgres_url_for(name),
            "REDIS_HOST": REDIS_HOST,
            "REDIS_PREFIX": f"test-{uuid.uuid4().hex}",
            # Replicas may share the database: another's unfinished effect is left for
            # this long before it is taken to be dead.
            "EFFECT_GRACE_SECONDS": "1",
            "REAPER_SECONDS": "0.5",
            # The dead process's sessions are taken over once their lease runs out.
            "SESSION_LEASE_SECONDS": "2",
        }


def _server(tmp_path: Path, backend_env: dict[str, str], failpoint: str) -> ServerProcess:
    return ServerProcess(
        {
            "ORCHESTRATOR_HOME": str(tmp_path / "home"),
            "LOG_LEVEL": "WARNING",
            "ENGINE_ENABLED": "true",
            "ENGINE_TICK_SECONDS": "0.2",
            "SECRET_KEY": SECRET,
            "FAILPOINTS": failpoint,
            **backend_env,
        },
        tmp_path / "server",
        # The failpoint kills the process it fires in: the server is that one process
        # (of several, the server would start the dead one again and live on).
        command=("serve", "--workers", "1"),
    )


def _start_session(http: httpx.Client, workspace: Path) -> str:
    workspace.mkdir(exist_ok=True)
    created = http.post(
        "/api/v1/sessions",
        json={
            "title": "One task",
            "initial_prompt": "Write the notes",
            "template": "single",
            "workspace": str(workspace),
            "auto_start": True,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


class Agent:
    def __init__(self, http: httpx.Client) -> None:
        registered = http.post(
            "/api/v1/agents/external/register",
            json={
                "protocol_version": "1.0",
                "name": f"LEDGER-AGENT-{uuid.uuid4().hex[:6]}",
                "version": "1.0.0",
                "agent_type": "implementer",
                "capabilities": sorted(known_capabilities())[:50],
            },
        )
        assert registered.status_code == 201, registered.text
        self.id = registered.json()["agent_id"]
        self.headers = {
            "Authorization": f"Bearer {registered.json()['auth_token']}",
            "X-Agent-ID": self.id,
        }

    def pull(self, http: httpx.Client) -> Json:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            response = http.post(
                f"/api/v1/agents/external/{self.id}/tasks/next",
                params={"wait_seconds": 2},
                headers=self.headers,
            )
            assert response.status_code in (200, 204), response.text
            if response.status_code == 200:
                return dict(response.json())
        pytest.fail("no task was assigned")

    def deliver(self, http: httpx.Client, task_id: str) -> httpx.Response:
        return http.post(
            f"/api/v1/agents/external/{self.id}/tasks/{task_id}/result",
            json={
                "task_id": task_id,
                "status": "completed",
                "artifacts": [{"path": FILE, "content": CONTENT}],
            },
            headers=self.headers,
        )


def _died(server: ServerProcess) -> int:
    """The server's exit code, once its failpoint has killed it."""
    try:
        return server.current.process.wait(WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the failpoint never fired\n{server.current.stderr}")


def _restart(server: ServerProcess) -> None:
    server.env.pop("FAILPOINTS")
    server.start()


def _effect(http: httpx.Client, session_id: str, key: str) -> Json:
    """The ledger entry under ``key``, once DONE."""
    deadline = time.monotonic() + WAIT
    while True:
        page = http.get(f"/api/v1/sessions/{session_id}/effects", params={"page_size": 100})
        assert page.status_code == 200, page.text
        found = {e["key"]: e for e in page.json()["items"]}
        if key in found and found[key]["state"] == "DONE":
            return found[key]
        assert time.monotonic() < deadline, f"{key} never DONE: {list(found.values())}"
        time.sleep(0.1)


def _git(tree: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True, check=True
    ).stdout


def _commits_with(tree: Path, key: str) -> list[str]:
    return _git(tree, "log", "-F", f"--grep=Orchestrator-Effect: {key}", "--format=%H").split()


def _checkpoint_after_task(http: httpx.Client, session_id: str, tree: Path) -> Json:
    items = http.get(
        f"/api/v1/sessions/{session_id}/checkpoints", params={"page_size": 100}
    ).json()["items"]
    after = [c for c in items if c["label"].startswith("after task")]
    assert len(after) == 1, items
    return dict(after[0])


def test_files_written_before_a_crash_are_not_written_again(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    with _server(tmp_path, backend_env, "effects.performed:workspace.write") as server:
        server.start()
        with server.client() as http:
            session_id = _start_session(http, tmp_path / "repo")
            tree = worktree_of(http, session_id, tmp_path / "repo", tmp_path / "home")
            agent = Agent(http)
            task_id = agent.pull(http)["task_id"]
            with pytest.raises(httpx.TransportError):
                agent.deliver(http, task_id)  # the server dies answering it
        assert _died(server) == -9
        written = tree / FILE
        assert written.read_text() == CONTENT
        before = written.stat()
        _restart(server)
        with server.client() as http:
            effect = _effect(http, session_id, f"write:{task_id}:1")
            assert effect["kind"] == "workspace.write"
            assert effect["detail"]["already"] == [FILE]
            assert effect["detail"]["written"] == []
            after = written.stat()
            assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
            final = wait_for_status(http, session_id, "COMPLETED", "FAILED")
            assert final["status"] == "COMPLETED", final
            attempts = http.get(f"/api/v1/tasks/{task_id}/attempts").json()
            assert [a["outcome"] for a in attempts] == ["completed"]
            checkpoint = _checkpoint_after_task(http, session_id, tree)
            assert _git(tree, "show", f"{checkpoint['data']['commit']}:{FILE}") == CONTENT
            log = http.get(
                f"/api/v1/sessions/{session_id}/events", params={"type": "session.log"}
            ).json()["items"]
            assert any("were there already" in e["payload"]["text"] for e in log)
            print(f"\n[figures] killed after the write: 0 files written again, 1 found ({FILE})")


def test_files_not_yet_written_at_a_crash_are_written_once(tmp_path: Path) -> None:
    with _server(tmp_path, {}, "effects.recorded:workspace.write") as server:
        server.start()
        with server.client() as http:
            session_id = _start_session(http, tmp_path / "repo")
            tree = worktree_of(http, session_id, tmp_path / "repo", tmp_path / "home")
            agent = Agent(http)
            task_id = agent.pull(http)["task_id"]
            with pytest.raises(httpx.TransportError):
                agent.deliver(http, task_id)
        assert _died(server) == -9
        assert not (tree / FILE).exists()
        _restart(server)
        with server.client() as http:
            effect = _effect(http, session_id, f"write:{task_id}:1")
            assert effect["detail"]["written"] == [FILE]
            assert effect["detail"]["already"] == []
            assert (tree / FILE).read_text() == CONTENT
            final = wait_for_status(http, session_id, "COMPLETED", "FAILED")
            assert final["status"] == "COMPLETED", final
            checkpoint = _checkpoint_after_task(http, session_id, tree)
            assert _git(tree, "show", f"{checkpoint['data']['commit']}:{FILE}") == CONTENT


def test_a_checkpoint_commit_made_before_a_crash_is_found_not_repeated(
    tmp_path: Path,
) -> None:
    # The checkpoint taken once the session is planned has nothing to commit (it names
    # the tree's HEAD): the first commit is the one after the task that delivered a file.
    with _server(tmp_path, {}, "effects.performed:checkpoint.commit") as server:
        server.start()
        with server.client() as http:
            session_id = _start_session(http, tmp_path / "repo")
            tree = worktree_of(http, session_id, tmp_path / "repo", tmp_path / "home")
            base = _git(tree, "rev-parse", "HEAD").strip()
            agent = Agent(http)
            task_id = agent.pull(http)["task_id"]
            with contextlib.suppress(httpx.TransportError):  # answered before the step, or not
                agent.deliver(http, task_id)
        assert _died(server) == -9
        key = f"checkpoint:{session_id}:after-task:{task_id}"
        made = _commits_with(tree, key)
        assert len(made) == 1
        _restart(server)
        with server.client() as http:
            effect = _effect(http, session_id, key)
            assert effect["detail"]["commit"] == made[0]
            final = wait_for_status(http, session_id, "COMPLETED", "FAILED")
            assert final["status"] == "COMPLETED", final
            checkpoints = http.get(
                f"/api/v1/sessions/{session_id}/checkpoints", params={"page_size": 100}
            ).json()["items"]
            planned = [c for c in checkpoints if c["label"] == "planned"]
            assert [c["data"]["commit"] for c in planned] == [base]
            assert _checkpoint_after_task(http, session_id, tree)["data"]["commit"] == made[0]
            assert _git(tree, "show", f"{made[0]}:{FILE}") == CONTENT
            effects = http.get(
                f"/api/v1/sessions/{session_id}/effects", params={"page_size": 100}
            ).json()["items"]
            assert all(e["state"] == "DONE" for e in effects), effects
            # Every checkpoint commit on the branch is there once, under its own key.
            for entry in effects:
                if entry["kind"] == "checkpoint.commit":
                    assert _commits_with(tree, entry["key"]) == [entry["detail"]["commit"]]
            print(f"\n[figures] killed after a checkpoint commit: {len(made)} commit, not 2")
