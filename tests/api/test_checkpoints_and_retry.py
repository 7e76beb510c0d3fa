"""Checkpoints (rotation, limits), retry from the last checkpoint, idempotent creation,
and the system-only states reached through the service."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from industrial_orchestrator.domain.sessions.states import SessionState

from .helpers import API, act, create, history


async def checkpoint(client, session_id, label, **fields):
    response = await client.post(
        f"{API}/sessions/{session_id}/checkpoints", json={"label": label, **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()


class TestCheckpoints:
    async def test_create_and_list_newest_first(self, client):
        session = await create(client, auto_start=True)
        first = await checkpoint(
            client, session["id"], "after plan", reason="Periodic", data={"tasks": ["a", "b"]}
        )
        second = await checkpoint(client, session["id"], "after tool use", data={"step": 2})
        assert (first["seq"], second["seq"]) == (1, 2)
        listed = (await client.get(f"{API}/sessions/{session['id']}/checkpoints")).json()
        assert [c["label"] for c in listed["items"]] == ["after tool use", "after plan"]
        assert listed["items"][1]["data"] == {"tasks": ["a", "b"]}
        assert listed["items"][1]["reason"] == "Periodic"
        assert listed["total"] == 2

    async def test_105_checkpoints_leave_the_newest_100(self, client):
        session = await create(client, auto_start=True)
        for n in range(1, 106):
            await checkpoint(client, session["id"], f"cp-{n}", data={"n": n})
        listed = (
            await client.get(
                f"{API}/sessions/{session['id']}/checkpoints", params={"page_size": 100}
            )
        ).json()
        assert listed["total"] == 100
        assert [c["data"]["n"] for c in listed["items"]] == list(range(105, 5, -1))
        assert (
            await client.get(
                f"{API}/sessions/{session['id']}/checkpoints", params={"page": 2, "page_size": 100}
            )
        ).json()["items"] == []

    @pytest.mark.settings(checkpoint_retention=3)
    async def test_retention_is_a_setting(self, client):
        session = await create(client)
        for n in range(5):
            await checkpoint(client, session["id"], f"cp-{n}")
        listed = (await client.get(f"{API}/sessions/{session['id']}/checkpoints")).json()
        assert [c["label"] for c in listed["items"]] == ["cp-4", "cp-3", "cp-2"]

    async def test_data_up_to_one_mebibyte(self, client):
        session = await create(client)
        overhead = len('{"blob":""}')
        await checkpoint(client, session["id"], "max", data={"blob": "x" * (2**20 - overhead)})
        response = await client.post(
            f"{API}/sessions/{session['id']}/checkpoints",
            json={"label": "too big", "data": {"blob": "x" * (2**20 - overhead + 1)}},
        )
        assert response.status_code == 413
        assert response.json()["details"]["limit"] == 2**20

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"label": ""},
            {"label": "x" * 201},
            {"label": "ok", "data": [1]},
            {"label": "ok", "extra": 1},
        ],
    )
    async def test_invalid_checkpoint_bodies(self, client, body):
        session = await create(client)
        response = await client.post(f"{API}/sessions/{session['id']}/checkpoints", json=body)
        assert response.status_code == 422

    async def test_a_checkpoint_of_an_unknown_session_is_a_404(self, client):
        missing = uuid.uuid4()
        response = await client.post(f"{API}/sessions/{missing}/checkpoints", json={"label": "x"})
        assert response.status_code == 404
        assert str(missing) in response.json()["message"]

    async def test_finished_sessions_refuse_new_checkpoints(self, client):
        session = await create(client, auto_start=True)
        await act(client, session["id"], "complete")
        response = await client.post(
            f"{API}/sessions/{session['id']}/checkpoints", json={"label": "late"}
        )
        assert response.status_code == 409
        assert response.json()["details"]["current_state"] == "COMPLETED"


class TestRetry:
    async def test_retry_creates_a_new_session_from_the_last_checkpoint(self, client):
        session = await create(client, auto_start=True, priority="HIGH", metadata={"repo": "svc"})
        await checkpoint(client, session["id"], "first", data={"done": ["design"]})
        last = await checkpoint(
            client, session["id"], "after implement", data={"done": ["design", "implement"]}
        )
        await act(client, session["id"], "fail", reason="tests red")

        response = await client.post(f"{API}/sessions/{session['id']}/retry")
        assert response.status_code == 201
        retry = response.json()
        assert retry["id"] != session["id"]
        assert retry["retry_of"] == session["id"]
        assert retry["attempt"] == 2
        assert retry["status"] == "PENDING"
        assert retry["restored_from_checkpoint"] == last["id"]
        assert (retry["title"], retry["priority"], retry["metadata"]) == (
            session["title"],
            "HIGH",
            {"repo": "svc"},
        )
        restored = (await client.get(f"{API}/sessions/{retry['id']}/checkpoints")).json()
        assert [c["data"] for c in restored["items"]] == [{"done": ["design", "implement"]}]
        assert last["id"] in restored["items"][0]["reason"]

        old = (await client.get(f"{API}/sessions/{session['id']}")).json()
        assert old["status"] == "FAILED"
        assert [r["to_state"] for r in await history(client, session["id"])][-1] == "FAILED"
        assert "retry of" in (await history(client, retry["id"]))[0]["reason"]

    async def test_start_on_a_failed_session_starts_its_retry(self, client):
        session = await create(client, auto_start=True)
        await act(client, session["id"], "stop")
        response = await client.post(f"{API}/sessions/{session['id']}/start")
        assert response.status_code == 201
        retry = response.json()
        assert (retry["retry_of"], retry["status"]) == (session["id"], "RUNNING")
        assert retry["restored_from_checkpoint"] is None

    async def test_retry_with_start_flag(self, client):
        session = await create(client)
        await act(client, session["id"], "fail", reason="x")
        retry = await act(client, session["id"], "retry", expect=201, start=True)
        assert retry["status"] == "RUNNING"

    async def test_a_session_is_retried_once_then_its_retry_is(self, client):
        session = await create(client)
        await act(client, session["id"], "fail", reason="x")
        first = await act(client, session["id"], "retry", expect=201)
        again = await client.post(f"{API}/sessions/{session['id']}/retry")
        assert again.status_code == 409
        assert again.json()["error"] == "already_retried"
        assert again.json()["details"]["retry_session_id"] == first["id"]
        await act(client, first["id"], "fail", reason="y")
        third = await act(client, first["id"], "retry", expect=201)
        assert third["attempt"] == 3

    async def test_concurrent_retries_create_one_session(self, client):
        session = await create(client)
        await act(client, session["id"], "fail", reason="x")
        responses = await asyncio.gather(
            *(client.post(f"{API}/sessions/{session['id']}/retry") for _ in range(8))
        )
        assert sorted(r.status_code for r in responses) == [201] + [409] * 7
        listed = (await client.get(f"{API}/sessions")).json()
        assert listed["total"] == 2

    @pytest.mark.parametrize("verbs", [[], ["start"], ["start", "complete"], ["cancel"]])
    async def test_only_failed_timeout_stopped_can_be_retried(self, client, verbs):
        session = await create(client)
        for verb in verbs:
            await act(client, session["id"], verb)
        response = await client.post(f"{API}/sessions/{session['id']}/retry")
        assert response.status_code == 409
        assert response.json()["details"]["retryable_states"] == ["FAILED", "STOPPED", "TIMEOUT"]

    async def test_timeout_is_retryable(self, client, service):
        session = await create(client, auto_start=True)
        await service.move(uuid.UUID(session["id"]), SessionState.TIMEOUT, reason="deadline")
        retry = await act(client, session["id"], "retry", expect=201)
        assert retry["retry_of"] == session["id"]


class TestSystemStates:
    async def test_degraded_can_be_resumed_completed_or_stopped(self, client, service):
        session = await create(client, auto_start=True)
        sid = uuid.UUID(session["id"])
        await service.move(sid, SessionState.DEGRADED, reason="provider retrying")
        resumed = await act(client, session["id"], "resume")
        assert resumed["status"] == "RUNNING"
        await service.move(sid, SessionState.DEGRADED)
        await act(client, session["id"], "stop")
        rows = await history(client, session["id"])
        assert [r["actor"] for r in rows] == [
            "operator",
            "operator",
            "system",
            "operator",
            "system",
            "operator",
        ]

    async def test_partially_completed_can_be_resumed_or_accepted(self, client, service):
        session = await create(client, auto_start=True)
        sid = uuid.UUID(session["id"])
        await service.move(sid, SessionState.PARTIALLY_COMPLETED, reason="2 of 3 tasks")
        assert (await act(client, session["id"], "resume"))["status"] == "RUNNING"
        await service.move(sid, SessionState.PARTIALLY_COMPLETED)
        assert (await act(client, session["id"], "complete"))["status"] == "COMPLETED"

    async def test_orphaned_is_final_and_has_no_verb(self, client, service):
        session = await create(client)
        await service.move(uuid.UUID(session["id"]), SessionState.ORPHANED, reason="parent gone")
        for verb in ("start", "cancel", "retry"):
            response = await client.post(f"{API}/sessions/{session['id']}/{verb}")
            assert response.status_code == 409


class TestIdempotentCreation:
    async def test_same_key_returns_the_same_session(self, client):
        body = {"title": "t", "initial_prompt": "p"}
        headers = {"Idempotency-Key": "deploy-42"}
        first = await client.post(f"{API}/sessions", json=body, headers=headers)
        second = await client.post(f"{API}/sessions", json=body, headers=headers)
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["id"] == second.json()["id"]
        assert (await client.get(f"{API}/sessions")).json()["total"] == 1

    async def test_replay_does_not_start_again(self, client):
        body = {"title": "t", "initial_prompt": "p", "auto_start": True}
        headers = {"Idempotency-Key": "k"}
        first = (await client.post(f"{API}/sessions", json=body, headers=headers)).json()
        await act(client, first["id"], "pause")
        replay = await client.post(f"{API}/sessions", json=body, headers=headers)
        assert replay.json()["status"] == "PAUSED"
        assert len(await history(client, first["id"])) == 3

    async def test_same_key_with_another_body_is_409(self, client):
        headers = {"Idempotency-Key": "k"}
        await client.post(
            f"{API}/sessions", json={"title": "a", "initial_prompt": "p"}, headers=headers
        )
        response = await client.post(
            f"{API}/sessions", json={"title": "b", "initial_prompt": "p"}, headers=headers
        )
        assert response.status_code == 409
        assert response.json()["error"] == "idempotency_key_reused"

    async def test_concurrent_requests_with_one_key_create_one_session(self, client):
        body = {"title": "t", "initial_prompt": "p"}
        responses = await asyncio.gather(
            *(
                client.post(f"{API}/sessions", json=body, headers={"Idempotency-Key": "race"})
                for _ in range(10)
            )
        )
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
        assert len({r.json()["id"] for r in responses}) == 1
        assert (await client.get(f"{API}/sessions")).json()["total"] == 1

    async def test_different_keys_create_different_sessions(self, client):
        body = {"title": "t", "initial_prompt": "p"}
        for key in ("a", "b"):
            await client.post(f"{API}/sessions", json=body, headers={"Idempotency-Key": key})
        assert (await client.get(f"{API}/sessions")).json()["total"] == 2


async def test_forks_start_from_a_checkpoint_and_leave_the_source_as_it_is(client):
    source = await create(client, auto_start=True, verify_command="make check", max_tokens=1000)
    first = await checkpoint(client, source["id"], "first", data={"step": 1})
    await checkpoint(client, source["id"], "second", data={"step": 2})
    response = await client.post(
        f"{API}/sessions/{source['id']}/fork",
        json={"checkpoint_id": first["id"], "amendment": "Use tabs.", "max_tokens": 50},
    )
    assert response.status_code == 201, response.text
    fork = response.json()
    assert (fork["status"], fork["forked_from"], fork["retry_of"]) == (
        "PENDING",
        source["id"],
        None,
    )
    assert fork["restored_from_checkpoint"] == first["id"]
    assert fork["initial_prompt"] == f"{source['initial_prompt']}\n\nUse tabs."
    # The options given replace the source's; the others are kept.
    assert (fork["options"]["max_tokens"], fork["options"]["verify_command"]) == (50, "make check")
    assert fork["options"]["amendment"] == "Use tabs."
    # It starts with the chosen checkpoint, not the newest one.
    copied = (await client.get(f"{API}/sessions/{fork['id']}/checkpoints")).json()["items"]
    assert [c["data"] for c in copied] == [{"step": 1}]
    after = (await client.get(f"{API}/sessions/{source['id']}")).json()
    assert (after["status"], after["version"]) == ("RUNNING", source["version"])
    # Any number of forks, each listed on the source.
    again = await client.post(
        f"{API}/sessions/{source['id']}/fork",
        json={"checkpoint_id": first["id"], "start": True},
    )
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "RUNNING"
    lineage = (await client.get(f"{API}/sessions/{source['id']}/lineage")).json()
    assert lineage["forks"] == [fork["id"], again.json()["id"]]
    assert lineage["forked_from"] is None
    mine = (await client.get(f"{API}/sessions/{fork['id']}/lineage")).json()
    assert (mine["forked_from"], mine["restored_from_checkpoint"], mine["forks"]) == (
        source["id"],
        first["id"],
        [],
    )


async def test_a_fork_needs_a_checkpoint_of_that_session(client):
    source = await create(client, auto_start=True)
    other = await create(client, auto_start=True)
    theirs = await checkpoint(client, other["id"], "theirs")
    wrong = await client.post(
        f"{API}/sessions/{source['id']}/fork", json={"checkpoint_id": theirs["id"]}
    )
    assert wrong.status_code == 404
    assert theirs["id"] in wrong.json()["message"]
    unknown = await client.post(
        f"{API}/sessions/{uuid.uuid4()}/fork", json={"checkpoint_id": theirs["id"]}
    )
    assert unknown.status_code == 404
    for body in ({}, {"checkpoint_id": "nope"}, {"checkpoint_id": theirs["id"], "amendment": ""}):
        refused = await client.post(f"{API}/sessions/{other['id']}/fork", json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert (await client.get(f"{API}/sessions/{source['id']}/lineage")).json()["forks"] == []
