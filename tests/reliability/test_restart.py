"""Committed data survives the server process dying, on SQLite and on PostgreSQL.

The real ``orchestrator serve`` runs as a subprocess. The test writes sessions in several
states (with history, checkpoints and an idempotency key), kills the server with SIGKILL
so no shutdown code can flush anything, starts it again on the same database and checks
that every resource reads back exactly as it was acknowledged. It then changes more data
and does a graceful (SIGTERM) restart, which must work just as well.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..backends import postgres_url_for, temporary_postgres_database
from ..server_process import ServerProcess

pytestmark = pytest.mark.slow

API = "/api/v1"
IDEMPOTENCY_KEY = "restart-test-create-1"
GRACEFUL_EXIT = (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM once it has shut down
Json = dict[str, Any]


@pytest.fixture
def database_env(backend: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment selecting a fresh database of ``backend`` (from the conftest)."""
    if backend == "sqlite":
        yield {"ORCHESTRATOR_HOME": str(tmp_path / "home")}
        return
    with temporary_postgres_database("io_restart") as name:
        yield {"DATABASE_URL": postgres_url_for(name)}


@pytest.fixture
def server(database_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    # One running slot, so that a QUEUED session exists and must stay queued on restart.
    env = {**database_env, "LOG_LEVEL": "WARNING", "MAX_CONCURRENT_SESSIONS": "1"}
    with ServerProcess(env, tmp_path / "server") as server:
        yield server


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    return response.json()


def _create(http: httpx.Client, title: str, **fields: Any) -> Json:
    body = {"title": title, "initial_prompt": f"Prompt for {title}", **fields}
    result: Json = _ok(http.post(f"{API}/sessions", json=body), 201)
    return result


def _act(http: httpx.Client, session_id: str, action: str, **body: Any) -> Json:
    url = f"{API}/sessions/{session_id}/{action}"
    result: Json = _ok(http.post(url, json=body or None))
    return result


def _checkpoint(http: httpx.Client, session_id: str, label: str, data: Json) -> Json:
    url = f"{API}/sessions/{session_id}/checkpoints"
    result: Json = _ok(http.post(url, json={"label": label, "data": data}), 201)
    return result


def _snapshot(http: httpx.Client, ids: list[str]) -> Json:
    """Everything the API says about these sessions (and the totals)."""
    listing = _ok(http.get(f"{API}/sessions", params={"page_size": 100}))
    stats = _ok(http.get(f"{API}/sessions/stats"))
    return {
        "ids": sorted(item["id"] for item in listing["items"]),
        "total": listing["total"],
        "by_state": stats["by_state"],
        "sessions": {i: _ok(http.get(f"{API}/sessions/{i}")) for i in ids},
        "transitions": {i: _ok(http.get(f"{API}/sessions/{i}/transitions")) for i in ids},
        "checkpoints": {
            i: _ok(http.get(f"{API}/sessions/{i}/checkpoints", params={"page_size": 100}))
            for i in ids
        },
    }


def _path(transitions: list[Json]) -> list[tuple[int, str | None, str]]:
    return [(t["seq"], t["from_state"], t["to_state"]) for t in transitions]


def _assert_same(actual: Json, expected: Json) -> None:
    """Part by part, so that a failure names what was lost or changed."""
    assert actual.keys() == expected.keys()
    for part, value in expected.items():
        assert actual[part] == value, f"{part} differs after the restart"


def _assert_ready(http: httpx.Client) -> None:
    assert _ok(http.get("/ready"))["status"] == "ready"


def test_committed_data_survives_sigkill_then_sigterm_restart(
    server: ServerProcess, tmp_path: Path
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    server.start()
    with server.client() as http:
        done = _create(http, "finished before the crash")
        _act(http, done["id"], "start")
        done = _act(http, done["id"], "complete", reason="all green")

        running = _create(http, "running at the crash", priority="CRITICAL")
        running = _act(http, running["id"], "start", reason="go")
        first = _checkpoint(
            http, running["id"], "after planning", {"plan": ["split", "test"], "step": 1}
        )
        second = _checkpoint(
            http,
            running["id"],
            "after tests",
            {"step": 2, "passed": 41, "ratio": 0.975, "ok": True, "skip": None, "note": "réussi ✓"},
        )

        queued = _create(http, "queued behind the running one", auto_start=True)

        body = {
            "title": "pending, created idempotently",
            "initial_prompt": "Wait",
            "priority": "HIGH",
            "workspace": str(workspace),
            "metadata": {"team": "платформа", "tags": ["a", "b"], "n": 3},
        }
        headers = {"Idempotency-Key": IDEMPOTENCY_KEY}
        pending = _ok(http.post(f"{API}/sessions", json=body, headers=headers), 201)

        ids = [done["id"], running["id"], queued["id"], pending["id"]]
        before = _snapshot(http, ids)

    # Sanity: the database holds what the writes acknowledged, in the expected states.
    for acknowledged in (done, running, queued, pending):
        assert before["sessions"][acknowledged["id"]] == acknowledged
    assert {i: (s["status"], s["version"]) for i, s in before["sessions"].items()} == {
        done["id"]: ("COMPLETED", 3),
        running["id"]: ("RUNNING", 2),
        queued["id"]: ("QUEUED", 2),
        pending["id"]: ("PENDING", 1),
    }
    assert _path(before["transitions"][done["id"]]) == [
        (1, None, "PENDING"),
        (2, "PENDING", "RUNNING"),
        (3, "RUNNING", "COMPLETED"),
    ]
    assert _path(before["transitions"][running["id"]]) == [
        (1, None, "PENDING"),
        (2, "PENDING", "RUNNING"),
    ]
    assert _path(before["transitions"][queued["id"]]) == [
        (1, None, "PENDING"),
        (2, "PENDING", "QUEUED"),
    ]
    assert _path(before["transitions"][pending["id"]]) == [(1, None, "PENDING")]
    assert before["checkpoints"][running["id"]]["items"] == [second, first]  # newest first
    assert [before["checkpoints"][i]["total"] for i in ids] == [0, 2, 0, 0]
    assert before["total"] == 4

    # Crash: no lifespan shutdown, no engine dispose, no flush.
    assert server.kill() == -signal.SIGKILL
    server.start()
    with server.client() as http:
        _assert_ready(http)
        _assert_same(_snapshot(http, ids), before)

        # The idempotency key is durable too: the replay returns the same session.
        replay = http.post(f"{API}/sessions", json=body, headers=headers)
        assert _ok(replay)["id"] == pending["id"]

        # Keep working on the restarted server, then restart it gracefully.
        third = _checkpoint(http, running["id"], "after review", {"step": 3})
        cancelled = _act(http, pending["id"], "cancel", reason="not needed")
        assert (cancelled["status"], cancelled["version"]) == ("CANCELLED", 2)
        middle = _snapshot(http, ids)
        assert middle["checkpoints"][running["id"]]["items"] == [third, second, first]
        assert middle["sessions"][pending["id"]] == cancelled
        assert middle["total"] == 4

    assert server.terminate() in GRACEFUL_EXIT
    server.start()
    with server.client() as http:
        _assert_ready(http)
        _assert_same(_snapshot(http, ids), middle)

    assert server.terminate() in GRACEFUL_EXIT
    for run in server.runs:
        assert "Traceback" not in run.stderr + run.stdout
