"""Two orchestrator processes on one PostgreSQL and one Redis: a watcher connected to
one replica sees what is done through the other, woken through Redis pub/sub."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from websockets.sync.client import connect

from ..api.helpers import API
from ..backends import REDIS_HOST, postgres_url_for, require_redis, temporary_postgres_database
from ..server_process import ServerProcess

pytestmark = pytest.mark.slow

# Far above the wait below: an event that arrives was woken through Redis, not found by
# the periodic re-read of the log.
POLL = "300"
WAIT = 60


def receive(ws, timeout: float = WAIT) -> dict:
    while True:
        message = json.loads(ws.recv(timeout=timeout))
        if message.get("type") != "ping":
            return message


def test_a_transition_through_one_replica_reaches_a_watcher_of_the_other(tmp_path: Path):
    require_redis()
    with temporary_postgres_database("io_test_replicas") as database:
        env = {
            "DATABASE_URL": postgres_url_for(database),
            "REDIS_HOST": REDIS_HOST,
            "REDIS_PREFIX": f"io-test-{uuid.uuid4().hex[:8]}",
            "EVENT_POLL_SECONDS": POLL,
            "LOG_LEVEL": "WARNING",
        }
        with ServerProcess(env, tmp_path / "a") as a, ServerProcess(env, tmp_path / "b") as b:
            a.start()
            b.start()
            with a.client() as http:
                created = http.post(f"{API}/sessions", json={"title": "t", "initial_prompt": "p"})
                sid = created.json()["id"]
                with connect(f"ws://127.0.0.1:{b.port}/ws/sessions/{sid}") as ws:
                    assert receive(ws)["type"] == "session.created"
                    assert http.post(f"{API}/sessions/{sid}/start").status_code == 200
                    started = receive(ws)
                    http.post(f"{API}/sessions/{sid}/logs", json={"stream": "agent", "text": "hi"})
                    logged = receive(ws)
    assert (started["seq"], started["payload"]["to"]) == (2, "RUNNING")
    assert (logged["seq"], logged["payload"]["text"]) == (3, "hi")
