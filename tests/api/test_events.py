"""The event log: written in the transaction of what it records, read back by sequence."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from industrial_orchestrator.domain.events import MAX_LOG_TEXT_BYTES

from .helpers import API, act, create, history


async def events_of(client, session_id, **params):
    response = await client.get(f"{API}/sessions/{session_id}/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_every_committed_transition_has_its_event_in_order(client):
    session = await create(client, auto_start=True)
    await act(client, session["id"], "pause", reason="lunch")
    await act(client, session["id"], "resume")
    await act(client, session["id"], "complete")
    page = await events_of(client, session["id"])
    items = page["items"]
    assert [e["seq"] for e in items] == [1, 2, 3, 4, 5]
    assert [e["type"] for e in items] == ["session.created"] + ["session.transition"] * 4
    moves = [(e["payload"]["from"], e["payload"]["to"]) for e in items[1:]]
    assert moves == [
        ("PENDING", "RUNNING"),
        ("RUNNING", "PAUSED"),
        ("PAUSED", "RUNNING"),
        ("RUNNING", "COMPLETED"),
    ]
    assert items[2]["payload"]["reason"] == "lunch"
    rows = await history(client, session["id"])
    assert [e["payload"]["transition_seq"] for e in items[1:]] == [r["seq"] for r in rows[1:]]
    assert page["next_since"] == 5


async def test_rejected_transitions_leave_no_event(client):
    session = await create(client)
    for verb in ("pause", "complete", "resume", "stop"):
        response = await client.post(f"{API}/sessions/{session['id']}/{verb}")
        assert response.status_code == 409
    stale = await client.post(f"{API}/sessions/{session['id']}/start", json={"expected_version": 9})
    assert stale.status_code == 409
    page = await events_of(client, session["id"])
    assert [e["type"] for e in page["items"]] == ["session.created"]


async def test_racing_writers_produce_one_event_per_winner(client):
    session = await create(client, auto_start=True)
    url = f"{API}/sessions/{session['id']}/pause"
    responses = await asyncio.gather(
        *(client.post(url, json={"expected_version": 2}) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 19
    page = await events_of(client, session["id"])
    assert [e["seq"] for e in page["items"]] == [1, 2, 3]


async def test_since_resumes_after_the_last_seen_event(client):
    session = await create(client, auto_start=True)
    for _ in range(3):
        await act(client, session["id"], "pause")
        await act(client, session["id"], "resume")
    first = await events_of(client, session["id"], limit=3)
    rest = await events_of(client, session["id"], since=first["next_since"])
    seqs = [e["seq"] for e in first["items"] + rest["items"]]
    assert seqs == list(range(1, 9))
    empty = await events_of(client, session["id"], since=rest["next_since"])
    assert empty == {"items": [], "next_since": 8}


async def test_filter_by_type(client):
    session = await create(client, auto_start=True)
    await client.post(f"{API}/sessions/{session['id']}/checkpoints", json={"label": "cp"})
    await client.post(
        f"{API}/sessions/{session['id']}/logs", json={"stream": "agent", "text": "thinking"}
    )
    page = await events_of(client, session["id"], type=["checkpoint.created", "session.log"])
    assert [e["type"] for e in page["items"]] == ["checkpoint.created", "session.log"]
    assert page["items"][0]["payload"]["label"] == "cp"


async def test_retry_and_checkpoint_events(client):
    session = await create(client, auto_start=True)
    await client.post(f"{API}/sessions/{session['id']}/checkpoints", json={"label": "cp"})
    await act(client, session["id"], "fail", reason="x")
    retry = await act(client, session["id"], "retry", expect=201)
    page = await events_of(client, retry["id"])
    assert [e["type"] for e in page["items"]] == ["session.created", "checkpoint.created"]
    assert page["items"][0]["payload"]["retry_of"] == session["id"]


class TestLogs:
    async def test_log_lines_become_events(self, client):
        session = await create(client)
        response = await client.post(
            f"{API}/sessions/{session['id']}/logs", json={"stream": "stdout", "text": "ok\n"}
        )
        assert response.status_code == 201
        assert response.json() == {"events": 1}
        log = (await events_of(client, session["id"], type="session.log"))["items"][0]
        assert log["payload"] == {"stream": "stdout", "text": "ok\n", "part": 1, "parts": 1}

    async def test_long_text_is_split_never_dropped(self, client):
        session = await create(client)
        text = "é" * MAX_LOG_TEXT_BYTES  # twice the chunk size in bytes
        response = await client.post(
            f"{API}/sessions/{session['id']}/logs", json={"stream": "tool", "text": text}
        )
        assert response.json() == {"events": 2}
        logs = (await events_of(client, session["id"], type="session.log"))["items"]
        assert "".join(e["payload"]["text"] for e in logs) == text
        assert [e["payload"]["part"] for e in logs] == [1, 2]

    @pytest.mark.parametrize(
        "body",
        [
            {"stream": "radio", "text": "x"},
            {"stream": "stdout", "text": ""},
            {"stream": "stdout"},
            {"stream": "stdout", "text": "x", "extra": 1},
        ],
    )
    async def test_invalid_log_bodies(self, client, body):
        session = await create(client)
        response = await client.post(f"{API}/sessions/{session['id']}/logs", json=body)
        assert response.status_code == 422

    async def test_text_over_the_request_cap_is_refused(self, client):
        session = await create(client)
        response = await client.post(
            f"{API}/sessions/{session['id']}/logs",
            json={"stream": "stdout", "text": "é" * (200 * 1024)},
        )
        assert response.status_code == 413

    async def test_unknown_session(self, client):
        response = await client.post(
            f"{API}/sessions/{uuid.uuid4()}/logs", json={"stream": "stdout", "text": "x"}
        )
        assert response.status_code == 404
        assert (await client.get(f"{API}/sessions/{uuid.uuid4()}/events")).status_code == 404
