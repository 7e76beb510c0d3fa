"""``orchestrator cluster``: three replicas on one PostgreSQL and Redis behind the real
HAProxy. The replica driving a session is SIGKILLed mid-session; HAProxy stops sending
to it, another replica takes the session over through the database lease, and a worker
talking only to the proxy finishes every task once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from industrial_orchestrator.cli.cluster import haproxy_config

from ..backends import REDIS_HOST, postgres_url_for, require_redis, temporary_postgres_database
from ..cli.test_worker import WorkerProcess
from ..server_process import free_port, orchestrator_command, orchestrator_env
from .test_engine_e2e import COMMAND, SECRET, start_crud_session, wait_for_status, worktree_of

pytestmark = pytest.mark.slow

REPLICAS = 3
WAIT = 60.0


class RetryingReads(httpx.HTTPTransport):
    """What browsers do (RFC 9110 9.2.2): a GET whose kept-alive connection was closed
    without an answer is sent again, once, on a new connection. HAProxy closes the
    client's connection that way when a request fails on a server connection it reused;
    the cluster's config asks for a new server connection per request, so this should
    not happen, and ``closed`` counts whether it did."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.RemoteProtocolError:
            if request.method != "GET":
                raise
            self.closed += 1
            return super().handle_request(request)


class Cluster:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "cluster.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                orchestrator_command(
                    "cluster", "--replicas", str(REPLICAS), "--port", str(self.port)
                ),
                env=orchestrator_env(**env),
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"the cluster never became ready:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def database() -> Iterator[str]:
    require_redis()
    with temporary_postgres_database("io_cluster") as name:
        yield name


async def _owner(database: str, session_id: str) -> str | None:
    connection = await asyncpg.connect(postgres_url_for(database), timeout=5)
    try:
        owner: str | None = await connection.fetchval(
            "SELECT owner FROM sessions WHERE id = $1", uuid.UUID(session_id)
        )
        return owner
    finally:
        await connection.close()


def test_a_killed_replica_s_session_completes_on_another(tmp_path: Path, database: str) -> None:
    env = {
        "DATABASE_URL": postgres_url_for(database),
        "REDIS_HOST": REDIS_HOST,
        "REDIS_PREFIX": f"test-{uuid.uuid4().hex}",
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "LOG_LEVEL": "WARNING",
        "ENGINE_ENABLED": "true",
        "ENGINE_TICK_SECONDS": "0.2",
        "AGENT_HEARTBEAT_SECONDS": "1",
        "SESSION_LEASE_SECONDS": "2",
        "SECRET_KEY": SECRET,
    }
    workspace = tmp_path / "repo"
    workspace.mkdir()
    cluster = Cluster(env, tmp_path / "cluster")
    worker: WorkerProcess | None = None
    try:
        cluster.wait_ready()
        reads = RetryingReads()
        with httpx.Client(base_url=cluster.url, timeout=30, transport=reads) as http:
            session_id = start_crud_session(http, workspace)
            deadline = time.monotonic() + WAIT
            while http.get(f"/api/v1/sessions/{session_id}").json()["phase"] != "EXECUTING":
                assert time.monotonic() < deadline, "never planned"
                time.sleep(0.1)
            owner = asyncio.run(_owner(database, session_id))
            assert owner is not None
            victim = int(owner.split(":")[1])
            os.kill(victim, signal.SIGKILL)  # the replica driving the session
            killed_at = time.monotonic()
            worker = WorkerProcess(
                cluster.url,
                tmp_path / "worker-home",
                tmp_path / "workers",
                "--any-capability",
                "--command",
                COMMAND,
            )
            final = wait_for_status(http, session_id, "COMPLETED", "FAILED")
            took = time.monotonic() - killed_at
            assert final["status"] == "COMPLETED", (final, worker.output)
            taken = http.get(
                f"/api/v1/sessions/{session_id}/events", params={"type": "session.taken_over"}
            ).json()["items"]
            assert [event["payload"]["from"] for event in taken] == [owner]
            new_owner = taken[0]["payload"]["to"]
            assert int(new_owner.split(":")[1]) != victim
            tree = worktree_of(http, session_id, workspace, tmp_path / "home")
            done = (tree / "done.log").read_text().split()
            assert len(done) == len(set(done)), "a task was done twice"
            # Every request went through the proxy while a replica was gone: none failed.
            assert http.get("/api/v1/sessions").status_code == 200
        print(
            f"\n[cluster] {REPLICAS} replicas behind HAProxy; the session's replica "
            f"SIGKILLed mid-session, taken over by another, COMPLETED {took:.1f} s later with "
            f"{len(done)} tasks each done once; {reads.closed} read(s) closed unanswered "
            "by the proxy and sent again"
        )
    finally:
        if worker is not None:
            worker.kill()
        code = cluster.stop()
    assert code == 0, cluster.log.read_text()
    assert "exited with code -9; starting it again" in cluster.log.read_text()


def test_the_proxy_configuration_is_accepted_by_haproxy(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config("127.0.0.1", free_port(), [free_port(), free_port()]))
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert config.read_text().count("server replica-") == 2


def test_the_cluster_refuses_sqlite_with_a_message(tmp_path: Path) -> None:
    finished = subprocess.run(
        orchestrator_command("cluster", "--replicas", "2", "--port", str(free_port())),
        env=orchestrator_env(ORCHESTRATOR_HOME=str(tmp_path / "home")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert "several replicas need PostgreSQL" in finished.stderr
