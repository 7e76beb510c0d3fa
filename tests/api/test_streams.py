"""The per-session WebSocket stream: history from ``since``, then live events, without
gap or duplicate at the boundary; unknown sessions are closed with 4404.

Starlette's TestClient drives the real app (lifespan included) in its own event loop.
"""

from __future__ import annotations

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
    overrides: dict[str, Any] = {"orchestrator_home": tmp_path / "home", "_env_file": None}
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
