"""The WebSocket streams: history from ``since``, then live events, without gap or
duplicate at the boundary; rewinds; the global streams; unknown sessions closed with 4404.

Starlette's TestClient drives the real app (lifespan included) in its own event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import load_settings

from ..backends import postgres_url_for, run_sync, truncate_all
from .helpers import API


@pytest.fixture
def http(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    # These tests drive sessions by hand: no engine moving them on behind their back.
    overrides: dict[str, Any] = {
        "orchestrator_home": tmp_path / "home",
        "_env_file": None,
        "engine_enabled": False,
    }
    if backend == "postgresql":
        database = request.getfixturevalue("postgres_database")
        run_sync(truncate_all, database)
        overrides["database_url"] = postgres_url_for(database)
    with TestClient(create_app(load_settings(**overrides))) as client:
        yield client


def new_session(http: TestClient, **fields: Any) -> str:
    response = http.post(f"{API}/sessions", json={"title": "t", "initial_prompt": "p", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def receive_events(ws: Any, count: int) -> list[dict[str, Any]]:
    events = []
    while len(events) < count:
        message = ws.receive_json()
        if message.get("type") != "ping":
            events.append(message)
    return events


def test_history_then_live_events_without_gap_or_duplicate(http):
    sid = new_session(http, auto_start=True)
    with http.websocket_connect(f"/ws/sessions/{sid}") as ws:
        history = receive_events(ws, 2)
        assert [(e["seq"], e["type"]) for e in history] == [
            (1, "session.created"),
            (2, "session.transition"),
        ]
        assert http.post(f"{API}/sessions/{sid}/pause").status_code == 200
        http.post(f"{API}/sessions/{sid}/logs", json={"stream": "agent", "text": "hello"})
        live = receive_events(ws, 2)
    assert [e["seq"] for e in live] == [3, 4]
    assert live[0]["payload"]["to"] == "PAUSED"
    assert live[1]["payload"]["text"] == "hello"


def test_reconnecting_with_since_gets_exactly_the_missed_events(http):
    sid = new_session(http)
    with http.websocket_connect(f"/ws/sessions/{sid}") as ws:
        last_seen = receive_events(ws, 1)[-1]["seq"]
    for n in range(500):
        response = http.post(
            f"{API}/sessions/{sid}/logs", json={"stream": "stdout", "text": f"line {n}"}
        )
        assert response.status_code == 201
    with http.websocket_connect(f"/ws/sessions/{sid}?since={last_seen}") as ws:
        missed = receive_events(ws, 500)
        http.post(f"{API}/sessions/{sid}/logs", json={"stream": "stdout", "text": "after"})
        after = receive_events(ws, 1)
    assert [e["seq"] for e in missed] == list(range(2, 502))
    assert [e["payload"]["text"] for e in missed] == [f"line {n}" for n in range(500)]
    assert after[0]["seq"] == 502


def test_two_watchers_of_one_session_both_receive(http):
    sid = new_session(http)
    with (
        http.websocket_connect(f"/ws/sessions/{sid}") as first,
        http.websocket_connect(f"/ws/sessions/{sid}?since=1") as second,
    ):
        receive_events(first, 1)
        http.post(f"{API}/sessions/{sid}/start")
        assert receive_events(first, 1)[0]["seq"] == 2
        assert receive_events(second, 1)[0]["seq"] == 2


def test_unknown_session_is_closed_with_4404(http):
    with (
        http.websocket_connect("/ws/sessions/00000000-0000-0000-0000-000000000000") as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_json()
    assert closed.value.code == 4404
    assert "does not exist" in closed.value.reason


def events_of_log(http: TestClient, since: int = 0) -> list[dict[str, Any]]:
    response = http.get(f"{API}/events", params={"since": since, "limit": 1000})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.mark.parametrize(
    ("path", "named"),
    [("/ws/sessions/not-a-uuid", "session_id"), ("/ws?since=-1", "since")],
)
def test_a_malformed_request_is_closed_with_4400_saying_what_is_wrong(http, path, named):
    with pytest.raises(WebSocketDisconnect) as closed, http.websocket_connect(path) as ws:
        ws.receive_json()
    assert closed.value.code == 4400
    assert named in closed.value.reason
    assert len(closed.value.reason.encode()) <= 123


def test_the_global_stream_starts_now_and_shows_every_session_in_commit_order(http):
    before = new_session(http)
    with http.websocket_connect("/ws") as everything, http.websocket_connect("/ws/sessions") as ss:
        first = new_session(http)
        second = new_session(http)
        http.post(f"{API}/sessions/{first}/start")
        http.post(f"{API}/sessions/{before}/logs", json={"stream": "tool", "text": "ls"})
        seen = receive_events(everything, 4)
        seen_sessions = receive_events(ss, 4)
    assert [(e["session_id"], e["type"]) for e in seen] == [
        (first, "session.created"),
        (second, "session.created"),
        (first, "session.transition"),
        (before, "session.log"),
    ]
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert seen_sessions == seen
    assert [e["id"] for e in events_of_log(http, since=ids[0] - 1)] == ids


def test_the_global_stream_resumes_from_an_id(http):
    sid = new_session(http)
    http.post(f"{API}/sessions/{sid}/start")
    created_id = events_of_log(http)[0]["id"]
    with http.websocket_connect(f"/ws?since={created_id}") as ws:
        resumed = receive_events(ws, 1)
    assert resumed[0]["type"] == "session.transition"
    assert resumed[0]["id"] > created_id


def test_a_since_message_rewinds_the_stream_without_duplicating_live_events(http):
    sid = new_session(http)
    with http.websocket_connect(f"/ws/sessions/{sid}") as ws:
        assert [e["seq"] for e in receive_events(ws, 1)] == [1]
        http.post(f"{API}/sessions/{sid}/start")
        assert [e["seq"] for e in receive_events(ws, 1)] == [2]
        ws.send_json({"since": 0})
        replayed = receive_events(ws, 2)
        http.post(f"{API}/sessions/{sid}/pause")
        live = receive_events(ws, 1)
    assert [e["seq"] for e in replayed] == [1, 2]
    assert [e["seq"] for e in live] == [3]


def test_control_messages_are_answered(http):
    sid = new_session(http)
    with http.websocket_connect(f"/ws/sessions/{sid}?since=1") as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        for bad in ("not json", "[1]", '{"since": -1}', '{"since": "3"}'):
            ws.send_text(bad)
            reply = ws.receive_json()
            assert reply["type"] == "error", bad
            assert "since" in reply["message"] or "JSON" in reply["message"]
        http.post(f"{API}/sessions/{sid}/start")
        assert receive_events(ws, 1)[0]["seq"] == 2


def test_a_silent_stream_is_pinged(tmp_path):
    settings = load_settings(
        orchestrator_home=tmp_path / "home",
        _env_file=None,
        ws_heartbeat_seconds=0.05,
        engine_enabled=False,
    )
    with TestClient(create_app(settings)) as http:
        sid = new_session(http)
        with http.websocket_connect(f"/ws/sessions/{sid}?since=1") as ws:
            assert ws.receive_json() == {"type": "ping"}


def metric(http: TestClient, line_start: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in /metrics")


def test_metrics_count_events_by_type_and_open_streams(http):
    created = 'orchestrator_events_total{type="session.created"}'
    logs = 'orchestrator_events_total{type="session.log"}'
    streams = 'orchestrator_ws_connections{stream="session"}'
    assert metric(http, created) == 0
    sid = new_session(http)
    http.post(f"{API}/sessions/{sid}/logs", json={"stream": "stdout", "text": "a"})
    http.post(f"{API}/sessions/{sid}/logs", json={"stream": "stdout", "text": "b"})
    assert metric(http, created) == 1
    assert metric(http, logs) == 2
    with http.websocket_connect(f"/ws/sessions/{sid}") as ws:
        receive_events(ws, 1)
        assert metric(http, streams) == 1
    # The gauge drops once the server has seen the close.
    for _ in range(100):
        if metric(http, streams) == 0:
            break
        time.sleep(0.02)
    assert metric(http, streams) == 0


def test_a_burst_bigger_than_the_queue_is_served_from_the_log(tmp_path):
    settings = load_settings(
        orchestrator_home=tmp_path / "home", _env_file=None, ws_queue_size=2, engine_enabled=False
    )
    long_text = "".join(f"{n:06d}\n" for n in range(20_000))  # 140 KB: 10 events in one commit
    with TestClient(create_app(settings)) as http:
        sid = new_session(http)
        with (
            http.websocket_connect(f"/ws/sessions/{sid}") as one,
            http.websocket_connect("/ws") as everything,
        ):
            receive_events(one, 1)
            parts = http.post(
                f"{API}/sessions/{sid}/logs", json={"stream": "stdout", "text": long_text}
            ).json()["events"]
            http.post(f"{API}/sessions/{sid}/start")
            got = receive_events(one, parts + 1)
            got_all = receive_events(everything, parts + 1)
        slow = metric(http, 'orchestrator_ws_slow_clients_total{stream="session"}')
    assert parts > 2
    assert [e["seq"] for e in got] == list(range(2, parts + 3))
    assert "".join(e["payload"]["text"] for e in got[:-1]) == long_text
    assert [e["id"] for e in got_all] == [e["id"] for e in got]
    assert slow == 0
