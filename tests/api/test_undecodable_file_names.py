"""An agent's shell can name a file with bytes that are not UTF-8. Every way such a name
leaves a session's tree (its changed files, its diff, the session page, the loop
guard's roll-back into a stored event) shows the bad bytes as U+FFFD and answers 200,
on SQLite and PostgreSQL. Real git trees, made as the engine makes them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome
from industrial_orchestrator.domain.tasks.loop_guard import LoopStop
from industrial_orchestrator.services.task_leases import Report, TaskLeases

from .helpers import API
from .test_external_agents import SECRET, ready_task, register
from .test_loop_reroute import TRIP, pulled
from .test_worktree_conflicts import _working

pytestmark = pytest.mark.settings(secret_key=SECRET)

BAD = b"bad\xff.py"
SHOWN = "bad\ufffd.py"


def _write_bad(tree: Path, content: bytes = b"print(1)\n") -> None:
    # Bytes, as a shell would make it: no str can name this file but a surrogate-escaped one.
    with open(os.fsencode(tree) + b"/" + BAD, "wb") as file:
        file.write(content)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    (path / "README.md").write_text("hello\n")
    return path


async def test_changed_files_and_diffs_show_an_undecodable_name_with_u_fffd(
    app: FastAPI, client: httpx.AsyncClient, workspace: Path
) -> None:
    a, tree_a = await _working(app, client, workspace, "a")
    b, tree_b = await _working(app, client, workspace, "b")
    _write_bad(tree_a)
    _write_bad(tree_b)
    # Text with a NUL past the first 8000 bytes, where git no longer looks for one to
    # call the file binary: it comes through in the diff.
    (tree_a / "late_nul.txt").write_bytes(b"line\n" * 2000 + b"nul \x00 here\n")

    conflicts = await client.get(f"{API}/sessions/{a['id']}/conflicts")
    assert conflicts.status_code == 200, conflicts.text
    assert conflicts.json()["files"] == [SHOWN, "late_nul.txt"]
    assert [(x["session_id"], x["files"]) for x in conflicts.json()["conflicts"]] == [
        (b["id"], [SHOWN])
    ]

    diff = await client.get(f"{API}/sessions/{a['id']}/diff")
    assert diff.status_code == 200, diff.text
    assert diff.json()["files"] == [SHOWN, "late_nul.txt"]
    text = diff.json()["diff"]
    assert "nul \ufffd here" in text
    assert "\x00" not in text

    page = await client.get(f"/sessions/{a['id']}", params={"fragment": "diff"})
    assert page.status_code == 200, page.text
    assert SHOWN in page.text


async def test_a_roll_back_of_an_undecodable_name_is_stored_in_its_event(
    app: FastAPI, client: httpx.AsyncClient, workspace: Path
) -> None:
    _, tree = await _working(app, client, workspace, "looping")
    trees = app.state.components.trees
    snapshot = await trees.snapshot(tree, "attempt 1 starts")
    _write_bad(tree)
    rolled_back = await trees.roll_back(tree, snapshot)
    assert rolled_back == [SHOWN]
    # The file itself, by its real name, is what was deleted.
    assert BAD not in os.listdir(os.fsencode(tree))

    # As the OpenCode executor reports the guard's stop with what was rolled back.
    looper = await register(client, name="looper")
    item = await ready_task(client)
    await pulled(looper)
    leases: TaskLeases = app.state.components.leases
    await leases.report(
        UUID(looper.id),
        Report(
            task_id=UUID(item["id"]),
            outcome=AttemptOutcome.FAILED,
            attempt=1,
            error=TRIP.error,
            loop_stop=LoopStop(TRIP, rolled_back=tuple(rolled_back)),
        ),
    )
    events = await client.get(f"{API}/events", params={"limit": 1000})
    assert events.status_code == 200, events.text
    [event] = [e for e in events.json()["items"] if e["type"] == "task.loop_stopped"]
    payload: dict[str, Any] = event["payload"]
    assert payload["rolled_back"] == [SHOWN]
