"""Contexts over the API, on SQLite and PostgreSQL: scopes and owners, concurrent stale
writes under each strategy, stored conflicts and their resolution, merges, the layered
view, and the end of TEMPORARY contexts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .helpers import API, create

WRITERS = 20


async def new_context(client, expect: int = 201, **fields: Any) -> dict[str, Any]:
    body = {"scope": "GLOBAL", "name": "conventions", "data": {}, **fields}
    response = await client.post(f"{API}/contexts", json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def write(client, context_id: str, **body: Any):
    return await client.patch(f"{API}/contexts/{context_id}", json=body)


async def stale_writers(client, context: dict[str, Any], strategy: str | None):
    """Twenty writers who all read version 1 and write at once, each its own key."""
    body: dict[str, Any] = {"expected_version": context["version"]}
    if strategy:
        body["strategy"] = strategy
    return await asyncio.gather(
        *(
            write(client, context["id"], writer=f"agent-{n:02d}", data={f"k{n:02d}": n}, **body)
            for n in range(WRITERS)
        )
    )


async def test_scopes_need_the_right_owner(client):
    session = await create(client)
    assert (await new_context(client))["owner_id"] is None
    owned = await new_context(client, scope="SESSION", owner_id=session["id"], name="plan")
    assert owned["owner_id"] == session["id"]
    for bad in (
        {"scope": "SESSION"},
        {"scope": "GLOBAL", "owner_id": session["id"]},
        {"scope": "SESSION", "owner_id": "00000000-0000-0000-0000-000000000001"},
        {"scope": "TEMPORARY", "owner_id": session["id"]},  # not a task
        {"scope": "GLOBAL", "ttl_seconds": 5},
        {"scope": "PLANET"},
        {"name": ""},
        {"data": [1, 2]},
        {"extra": 1},
    ):
        error = await new_context(client, expect=422, **bad)
        assert error["message"], bad
    listed = await client.get(f"{API}/contexts", params={"scope": "SESSION"})
    assert [c["id"] for c in listed.json()] == [owned["id"]]


async def test_manual_turns_every_stale_write_into_a_conflict_and_loses_none(client):
    context = await new_context(client, critical=True, data={"base": True})
    assert context["default_strategy"] == "manual"
    answers = await stale_writers(client, context, None)
    assert sorted(r.status_code for r in answers) == [200] + [409] * (WRITERS - 1)
    refused = [r.json() for r in answers if r.status_code == 409]
    assert {r["error"] for r in refused} == {"context_conflict"}
    assert all(r["details"]["current_version"] == 2 for r in refused)
    winner = next(r.json() for r in answers if r.status_code == 200)["context"]
    conflicts = (await client.get(f"{API}/contexts/{context['id']}/conflicts")).json()
    assert {c["id"] for c in conflicts} == {r["details"]["conflict_id"] for r in refused}
    # No lost write: each writer's data is either the context's or one stored conflict's.
    kept = [winner["data"]] + [c["incoming"] for c in conflicts]
    assert sorted(k for data in kept for k in data) == [f"k{n:02d}" for n in range(WRITERS)]
    assert all(c["current_version"] == 2 and c["status"] == "open" for c in conflicts)


async def test_deep_merge_keeps_every_writers_keys(client):
    context = await new_context(client, data={"base": {"nested": 1}})
    answers = await stale_writers(client, context, "deep_merge")
    assert {r.status_code for r in answers} == {200}
    final = (await client.get(f"{API}/contexts/{context['id']}")).json()
    assert final["data"] == {"base": {"nested": 1}, **{f"k{n:02d}": n for n in range(WRITERS)}}
    assert final["version"] == 1 + WRITERS
    assert set(final["vector"]) >= {f"agent-{n:02d}" for n in range(WRITERS)}


async def test_last_write_wins_ends_with_one_consistent_value(client):
    context = await new_context(client, data={"base": 0})
    answers = await stale_writers(client, context, None)
    assert {r.status_code for r in answers} == {200}
    final = (await client.get(f"{API}/contexts/{context['id']}")).json()
    # One whole write, not a mixture: exactly one writer's key.
    assert len(final["data"]) == 1
    ((key, value),) = final["data"].items()
    assert final["last_writer"] == f"agent-{value:02d}"
    assert key == f"k{value:02d}"


async def test_fresh_writes_replace_and_stale_ones_say_so(client):
    context = await new_context(client, data={"a": 1})
    fresh = await write(client, context["id"], writer="w", data={"b": 2}, expected_version=1)
    assert fresh.status_code == 200
    assert fresh.json()["stale"] is False
    assert fresh.json()["context"]["data"] == {"b": 2}
    vector = fresh.json()["context"]["vector"]
    stale = await write(client, context["id"], writer="v", data={"c": 3}, seen_vector={})
    assert stale.json()["stale"] is True
    assert stale.json()["superseded"] is False  # the later write wins
    assert stale.json()["context"]["data"] == {"c": 3}
    # Read before v's write: stale too, and again the later write wins.
    missed = await write(client, context["id"], writer="u", data={"d": 4}, seen_vector=vector)
    assert missed.json()["stale"] is True
    assert missed.json()["context"]["data"] == {"d": 4}
    seen = missed.json()["context"]["vector"]
    current = await write(client, context["id"], writer="t", data={"e": 5}, seen_vector=seen)
    assert current.json()["stale"] is False
    assert current.json()["context"]["version"] == 5


@pytest.mark.parametrize(
    ("choose", "custom", "expected"),
    [
        ("current", None, {"k00": 0}),
        ("incoming", None, "incoming"),
        ("custom", {"settled": True}, {"settled": True}),
    ],
)
async def test_resolving_a_conflict(client, choose, custom, expected):
    context = await new_context(client, critical=True)
    first = await write(client, context["id"], writer="a", data={"k00": 0}, expected_version=1)
    assert first.status_code == 200
    late = await write(client, context["id"], writer="b", data={"k01": 1}, expected_version=1)
    assert late.status_code == 409
    conflict_id = late.json()["details"]["conflict_id"]
    body: dict[str, Any] = {"choose": choose, "writer": "operator"}
    if custom is not None:
        body["data"] = custom
    url = f"{API}/contexts/{context['id']}/conflicts/{conflict_id}/resolve"
    resolved = await client.post(url, json=body)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["data"] == ({"k01": 1} if expected == "incoming" else expected)
    assert resolved.json()["version"] == 3
    again = await client.post(url, json=body)
    assert again.status_code == 409
    settled = (await client.get(f"{API}/contexts/{context['id']}/conflicts")).json()
    assert [(c["status"], c["resolution"]) for c in settled] == [("resolved", choose)]
    missing = await client.post(url.replace(conflict_id, context["id"]), json=body)
    assert missing.status_code == 404


async def test_custom_resolution_needs_data(client):
    context = await new_context(client, critical=True)
    await write(client, context["id"], writer="a", data={"x": 1}, expected_version=1)
    late = await write(client, context["id"], writer="b", data={"y": 1}, expected_version=1)
    url = f"{API}/contexts/{context['id']}/conflicts/{late.json()['details']['conflict_id']}"
    refused = await client.post(f"{url}/resolve", json={"choose": "custom"})
    assert refused.status_code == 422


async def test_layered_view_and_merge(client):
    session = await create(client)
    task = await client.post(f"{API}/tasks", json={"title": "t", "session_id": session["id"]})
    task_id = task.json()["id"]
    agent_id = "7d3c2c1a-0000-4000-8000-000000000001"
    glob = await new_context(client, data={"style": "pep8", "model": "small", "deep": {"a": 1}})
    sess = await new_context(
        client, scope="SESSION", owner_id=session["id"], data={"model": "large", "deep": {"b": 2}}
    )
    agent = await new_context(client, scope="AGENT", owner_id=agent_id, data={"tone": "terse"})
    temp = await new_context(client, scope="TEMPORARY", owner_id=task_id, data={"model": "tiny"})
    view = await client.get(
        f"{API}/contexts/resolve",
        params={"session_id": session["id"], "agent_id": agent_id, "task_id": task_id},
    )
    assert view.status_code == 200
    body = view.json()
    assert body["data"] == {
        "style": "pep8",
        "model": "tiny",
        "deep": {"a": 1, "b": 2},
        "tone": "terse",
    }
    assert body["provenance"]["model"] == temp["id"]
    assert body["provenance"]["style"] == glob["id"]
    assert body["provenance"]["tone"] == agent["id"]
    assert [c["scope"] for c in body["layers"]] == ["GLOBAL", "SESSION", "AGENT", "TEMPORARY"]
    session_only = (
        await client.get(f"{API}/contexts/resolve", params={"session_id": session["id"]})
    ).json()
    assert session_only["data"]["model"] == "large"

    merged = await client.post(
        f"{API}/contexts/merge",
        json={"context_ids": [glob["id"], sess["id"]], "strategy": "deep_merge"},
    )
    assert merged.status_code == 200
    assert merged.json()["data"]["deep"] == {"a": 1, "b": 2}
    paths = [c["path"] for c in merged.json()["conflicts"]]
    assert ["model"] in paths
    unknown = await client.post(
        f"{API}/contexts/merge", json={"context_ids": [session["id"]], "strategy": "manual"}
    )
    assert unknown.status_code == 422


async def test_temporary_contexts_end_with_their_task_or_ttl(client):
    task = (await client.post(f"{API}/tasks", json={"title": "scratchpad owner"})).json()
    scratch = await new_context(client, scope="TEMPORARY", owner_id=task["id"], data={"z": 1})
    brief = await new_context(
        client, scope="TEMPORARY", owner_id=task["id"], name="brief", ttl_seconds=0.2
    )
    assert brief["expires_at"] is not None
    await asyncio.sleep(0.3)
    assert (await client.get(f"{API}/contexts/{brief['id']}")).status_code == 404
    assert (await client.get(f"{API}/contexts/{scratch['id']}")).status_code == 200
    for status in ("READY", "RUNNING", "FAILED", "READY", "RUNNING", "COMPLETED"):
        moved = await client.patch(f"{API}/tasks/{task['id']}", json={"status": status})
        assert moved.status_code == 200, moved.text
        if status == "FAILED":  # a failed task may be retried: its memory stays
            assert (await client.get(f"{API}/contexts/{scratch['id']}")).status_code == 200
    assert (await client.get(f"{API}/contexts/{scratch['id']}")).status_code == 404


async def test_context_events_go_to_the_owning_session_or_the_global_stream(client):
    session = await create(client)
    owned = await new_context(
        client, scope="SESSION", owner_id=session["id"], name="plan", critical=True
    )
    assert (
        await write(client, owned["id"], writer="a", data={"x": 1}, expected_version=1)
    ).is_success
    late = await write(client, owned["id"], writer="b", data={"y": 1}, expected_version=1)
    conflict_id = late.json()["details"]["conflict_id"]
    url = f"{API}/contexts/{owned['id']}/conflicts/{conflict_id}/resolve"
    assert (await client.post(url, json={"choose": "incoming"})).status_code == 200
    glob = await new_context(client, name="shared")

    stream = (await client.get(f"{API}/sessions/{session['id']}/events")).json()["items"]
    context_events = [(e["type"], e["payload"]) for e in stream if e["type"].startswith("context.")]
    assert [t for t, _ in context_events] == [
        "context.created",
        "context.updated",
        "context.conflict",
        "context.resolved",
    ]
    assert context_events[1][1]["writer"] == "a"
    assert context_events[2][1]["conflict_id"] == conflict_id
    assert context_events[3][1] == {
        "context_id": owned["id"],
        "conflict_id": conflict_id,
        "resolution": "incoming",
        "resolved_by": "operator",
        "version": 3,
    }
    everything = (await client.get(f"{API}/events", params={"type": "context.created"})).json()
    created = {e["payload"]["context_id"]: e["session_id"] for e in everything["items"]}
    assert created == {owned["id"]: session["id"], glob["id"]: None}
