"""Racing writers on one session: guarded updates let exactly one request win per
version, and the history stays gap-free and duplicate-free."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from ..api.helpers import API, create, history

CLIENTS = 50


async def test_fifty_requests_on_one_version_have_exactly_one_winner(client):
    session = await create(client, auto_start=True)
    url = f"{API}/sessions/{session['id']}/pause"
    responses = await asyncio.gather(
        *(client.post(url, json={"expected_version": session["version"]}) for _ in range(CLIENTS))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * (CLIENTS - 1)
    assert {r.json()["error"] for r in responses if r.status_code == 409} <= {
        "version_conflict",
        "illegal_transition",
    }
    rows = await history(client, session["id"])
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[-1]["to_state"] == "PAUSED"


async def test_fifty_racing_writers_one_winner_per_version_and_no_gap(client):
    session = await create(client, auto_start=True)
    sid = session["id"]
    wins: list[int] = []
    conflicts = 0

    async def worker() -> None:
        nonlocal conflicts
        for _ in range(6):
            current = (await client.get(f"{API}/sessions/{sid}")).json()
            verb = "pause" if current["status"] == "RUNNING" else "resume"
            response = await client.post(
                f"{API}/sessions/{sid}/{verb}", json={"expected_version": current["version"]}
            )
            if response.status_code == 200:
                wins.append(response.json()["version"])
            else:
                assert response.status_code == 409, response.text
                conflicts += 1

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))

    assert len(wins) == len(set(wins)), "two requests won the same version"
    final = (await client.get(f"{API}/sessions/{sid}")).json()
    assert sorted(wins) == list(range(3, final["version"] + 1))
    rows = await history(client, sid)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == 2 + len(wins)
    for before, after in itertools.pairwise(rows):
        assert after["from_state"] == before["to_state"]
    assert conflicts > 0
    print(
        f"\n[racing writers] {CLIENTS} writers, {len(wins) + conflicts} guarded transitions "
        f"asked: {len(wins)} won (one per version, none twice), {conflicts} refused with 409"
    )


async def test_unguarded_racing_verbs_keep_the_history_consistent(client):
    session = await create(client, auto_start=True)
    sid = session["id"]
    verbs = ["pause", "resume"] * (CLIENTS // 2)
    responses = await asyncio.gather(
        *(client.post(f"{API}/sessions/{sid}/{verb}") for verb in verbs)
    )
    assert {r.status_code for r in responses} <= {200, 409}
    succeeded = [r for r in responses if r.status_code == 200]
    rows = await history(client, sid)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == 2 + len(succeeded)
    final = (await client.get(f"{API}/sessions/{sid}")).json()
    assert final["version"] == len(rows)
    assert final["status"] == rows[-1]["to_state"]


@pytest.mark.settings(max_concurrent_sessions=3)
async def test_racing_starts_never_exceed_the_slot_limit(client):
    limit = 3
    sessions = [await create(client) for _ in range(limit + 5)]
    await asyncio.gather(*(client.post(f"{API}/sessions/{s['id']}/start") for s in sessions))
    stats = (await client.get(f"{API}/sessions/stats")).json()
    assert stats["by_state"]["RUNNING"] == limit
    assert stats["by_state"]["QUEUED"] == 5


@pytest.mark.settings(max_concurrent_sessions=3)
async def test_racing_starts_of_one_session_take_one_slot(client):
    """Starts of one session at once: one wins (and takes one running slot), the others
    are refused as conflicts, never a 500 from two slots claimed for it."""
    session = await create(client)
    url = f"{API}/sessions/{session['id']}/start"
    responses = await asyncio.gather(*(client.post(url) for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 19, [r.text for r in responses if r.status_code != 409]
    # Two slots are left: exactly two more sessions start, the third queues.
    others = [await create(client, auto_start=True) for _ in range(3)]
    assert [o["status"] for o in others] == ["RUNNING", "RUNNING", "QUEUED"]


@pytest.mark.settings(max_concurrent_sessions=1)
async def test_a_start_racing_a_finish_never_leaves_a_free_slot_unused(client):
    """Whichever commits last, the queued session must end up running."""
    for _ in range(15):
        holder = await create(client, auto_start=True)
        waiting = await create(client)
        finish, start = await asyncio.gather(
            client.post(f"{API}/sessions/{holder['id']}/complete"),
            client.post(f"{API}/sessions/{waiting['id']}/start"),
        )
        assert (finish.status_code, start.status_code) == (200, 200)
        now = (await client.get(f"{API}/sessions/{waiting['id']}")).json()
        assert now["status"] == "RUNNING", await history(client, waiting["id"])
        await client.post(f"{API}/sessions/{waiting['id']}/complete")
