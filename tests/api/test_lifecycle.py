"""Lifecycle verbs over HTTP: success paths, 409s that explain themselves, optimistic
concurrency, the running-slot limit and the queue."""

from __future__ import annotations

import itertools

import pytest

from .helpers import API, act, create, history

VERB_PATHS = [
    # (verbs to reach the state, final state)
    ([], "PENDING"),
    (["start"], "RUNNING"),
    (["start", "pause"], "PAUSED"),
    (["start", "complete"], "COMPLETED"),
    (["fail"], "FAILED"),
    (["cancel"], "CANCELLED"),
    (["start", "stop"], "STOPPED"),
    (["start", "pause", "resume"], "RUNNING"),
    (["start", "pause", "stop"], "STOPPED"),
    (["start", "pause", "cancel"], "CANCELLED"),
]

ALLOWED = {
    "PENDING": {"start", "fail", "cancel"},
    "RUNNING": {"pause", "complete", "fail", "stop"},
    "PAUSED": {"resume", "cancel", "stop"},
    "COMPLETED": set(),
    "FAILED": {"retry", "start"},
    "CANCELLED": set(),
    "STOPPED": {"retry", "start"},
}
VERBS = ["start", "pause", "resume", "complete", "cancel", "stop"]
ILLEGAL = [
    (state, verb)
    for state in ("PENDING", "RUNNING", "PAUSED", "COMPLETED", "CANCELLED")
    for verb in VERBS
    if verb not in ALLOWED[state]
]


async def reach(client, verbs):
    session = await create(client)
    for verb in verbs:
        body = {"reason": "because"} if verb == "fail" else {}
        session = await act(client, session["id"], verb, **body)
    return session


@pytest.mark.parametrize(("verbs", "state"), VERB_PATHS)
async def test_verb_paths_reach_their_state_with_full_history(client, verbs, state):
    session = await reach(client, verbs)
    assert session["status"] == state
    assert session["version"] == len(verbs) + 1
    rows = await history(client, session["id"])
    assert [r["seq"] for r in rows] == list(range(1, len(verbs) + 2))
    assert rows[-1]["to_state"] == state
    assert all(r["actor"] == "operator" for r in rows)
    for before, after in itertools.pairwise(rows):
        assert after["from_state"] == before["to_state"]


@pytest.mark.parametrize(("state", "verb"), ILLEGAL)
async def test_verbs_outside_their_states_are_409_naming_the_states(client, state, verb):
    verbs = next(v for v, s in VERB_PATHS if s == state)
    session = await reach(client, verbs)
    response = await client.post(f"{API}/sessions/{session['id']}/{verb}")
    assert response.status_code == 409
    error = response.json()
    assert error["error"] == "illegal_transition"
    assert error["details"]["current_state"] == state
    assert error["details"]["requested_state"]
    assert set(error["details"]["allowed_actions"]) == ALLOWED[state]
    assert state in error["message"]
    unchanged = (await client.get(f"{API}/sessions/{session['id']}")).json()
    assert unchanged["version"] == session["version"]


async def test_fail_requires_a_reason_and_records_it(client):
    session = await create(client, auto_start=True)
    missing = await client.post(f"{API}/sessions/{session['id']}/fail", json={})
    assert missing.status_code == 422
    failed = await act(client, session["id"], "fail", reason="compiler crashed")
    assert failed["status_reason"] == "compiler crashed"
    assert (await history(client, session["id"]))[-1]["reason"] == "compiler crashed"


async def test_reason_is_recorded_on_any_verb(client):
    session = await create(client, auto_start=True)
    await act(client, session["id"], "pause", reason="lunch")
    assert (await history(client, session["id"]))[-1]["reason"] == "lunch"


async def test_unknown_body_field_on_a_verb_is_422(client):
    session = await create(client)
    response = await client.post(f"{API}/sessions/{session['id']}/start", json={"force": True})
    assert response.status_code == 422


class TestExpectedVersion:
    async def test_matching_version_in_body_succeeds(self, client):
        session = await create(client)
        moved = await act(client, session["id"], "start", expected_version=1)
        assert moved["version"] == 2

    async def test_stale_version_in_body_is_409(self, client):
        session = await create(client, auto_start=True)
        response = await client.post(
            f"{API}/sessions/{session['id']}/pause", json={"expected_version": 1}
        )
        assert response.status_code == 409
        error = response.json()
        assert error["error"] == "version_conflict"
        assert error["details"]["current_version"] == 2
        assert error["details"]["expected_version"] == 1

    async def test_if_match_header(self, client):
        session = await create(client)
        url = f"{API}/sessions/{session['id']}/start"
        stale = await client.post(url, headers={"If-Match": '"7"'})
        assert stale.status_code == 409
        ok = await client.post(url, headers={"If-Match": '"1"'})
        assert ok.status_code == 200

    async def test_if_match_disagreeing_with_body_is_422(self, client):
        session = await create(client)
        response = await client.post(
            f"{API}/sessions/{session['id']}/start",
            json={"expected_version": 1},
            headers={"If-Match": "2"},
        )
        assert response.status_code == 422

    async def test_garbage_if_match_is_422(self, client):
        session = await create(client)
        response = await client.post(
            f"{API}/sessions/{session['id']}/start", headers={"If-Match": "banana"}
        )
        assert response.status_code == 422
        assert "If-Match" in response.json()["message"]


@pytest.mark.settings(max_concurrent_sessions=2)
class TestRunningSlots:
    async def test_start_queues_when_full_and_promotes_by_priority_then_age(self, client):
        running = [await create(client, auto_start=True) for _ in range(2)]
        low = await act(client, (await create(client, priority="LOW"))["id"], "start")
        medium_old = await act(client, (await create(client))["id"], "start")
        critical = await act(client, (await create(client, priority="CRITICAL"))["id"], "start")
        medium_new = await act(client, (await create(client))["id"], "start")
        assert {s["status"] for s in (low, medium_old, critical, medium_new)} == {"QUEUED"}
        assert "MAX_CONCURRENT_SESSIONS" in (await history(client, low["id"]))[-1]["reason"]

        await act(client, running[0]["id"], "complete")
        assert (await client.get(f"{API}/sessions/{critical['id']}")).json()["status"] == "RUNNING"
        promoted = (await history(client, critical["id"]))[-1]
        assert (promoted["actor"], promoted["from_state"]) == ("scheduler", "QUEUED")

        await act(client, running[1]["id"], "pause")
        assert (await client.get(f"{API}/sessions/{medium_old['id']}")).json()["status"] == (
            "RUNNING"
        )
        for waiting in (low, medium_new):
            assert (await client.get(f"{API}/sessions/{waiting['id']}")).json()["status"] == (
                "QUEUED"
            )
        stats = (await client.get(f"{API}/sessions/stats")).json()
        assert stats["running"] == 2

    async def test_resume_refuses_when_no_slot_is_free(self, client):
        first = await create(client, auto_start=True)
        await act(client, first["id"], "pause")
        await create(client, auto_start=True)
        await create(client, auto_start=True)
        response = await client.post(f"{API}/sessions/{first['id']}/resume")
        assert response.status_code == 409
        assert response.json()["error"] == "capacity_exhausted"

    async def test_cancelled_queued_session_never_starts(self, client):
        blockers = [await create(client, auto_start=True) for _ in range(2)]
        queued = await create(client, auto_start=True)
        assert queued["status"] == "QUEUED"
        await act(client, queued["id"], "cancel")
        await act(client, blockers[0]["id"], "complete")
        after = (await client.get(f"{API}/sessions/{queued['id']}")).json()
        assert after["status"] == "CANCELLED"
        assert [r["to_state"] for r in await history(client, queued["id"])] == [
            "PENDING",
            "QUEUED",
            "CANCELLED",
        ]

    async def test_explicit_start_of_queued_session_refuses_while_full(self, client):
        for _ in range(2):
            await create(client, auto_start=True)
        queued = await create(client, auto_start=True)
        response = await client.post(f"{API}/sessions/{queued['id']}/start")
        assert response.status_code == 409
        assert response.json()["error"] == "capacity_exhausted"
