"""The side-effect ledger through the API, on SQLite and PostgreSQL: a result's files are
recorded before they are written and marked done after, shown by GET
/sessions/{id}/effects; while a session has files still to be written, its next tasks
wait for them. (Crashes between the two: tests/reliability/test_effect_ledger.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from industrial_orchestrator.domain.effects import (
    EffectKind,
    pending_effect,
    workspace_write_key,
)

from .helpers import API, act, create
from .test_external_agents import SECRET, Agent, ready_task, register

pytestmark = pytest.mark.settings(secret_key=SECRET)
Json = dict[str, Any]


async def _started(client: Any, tmp_path: Path) -> tuple[Path, Agent, Json, Json]:
    """A registered agent, and a started session on a workspace with one READY task."""
    workspace = tmp_path / "repo"
    workspace.mkdir()
    agent = await register(client)
    session = await create(client, workspace=str(workspace))
    await act(client, session["id"], "start")
    return workspace, agent, session, await ready_task(client, session_id=session["id"])


async def test_a_result_s_files_are_in_the_ledger_once_written(client, tmp_path: Path):
    _workspace, agent, session, item = await _started(client, tmp_path)
    await agent.pull()
    await agent.report(item["id"], artifacts=[{"path": "src/a.py", "content": "x = 1\n"}])
    page = (await client.get(f"{API}/sessions/{session['id']}/effects")).json()
    assert page["total"] == 1
    [effect] = page["items"]
    assert effect["key"] == workspace_write_key(UUID(item["id"]), 1)
    assert effect["kind"] == "workspace.write"
    assert effect["state"] == "DONE"
    assert effect["task_id"] == item["id"]
    assert effect["detail"]["written"] == ["src/a.py"]
    assert effect["detail"]["already"] == []
    assert effect["detail"]["owner"]
    assert effect["done_at"] >= effect["created_at"]
    log = (
        await client.get(f"{API}/sessions/{session['id']}/events", params={"type": "session.log"})
    ).json()["items"]
    assert any("wrote 1 file(s)" in e["payload"]["text"] for e in log)


async def test_a_failed_result_writes_nothing_and_records_no_effect(client, tmp_path: Path):
    workspace, agent, session, item = await _started(client, tmp_path)
    await agent.pull()
    await agent.report(
        item["id"],
        status="failed",
        error="no",
        artifacts=[{"path": "src/a.py", "content": "x = 1\n"}],
    )
    page = (await client.get(f"{API}/sessions/{session['id']}/effects")).json()
    assert page == {"items": [], "total": 0, "page": 1, "page_size": 20}
    assert not (workspace / "src" / "a.py").exists()


async def test_the_ledger_of_an_unknown_session_is_a_404(client):
    response = await client.get(f"{API}/sessions/{uuid4()}/effects")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_a_session_s_tasks_wait_while_its_files_are_still_to_be_written(
    app, client, tmp_path: Path
):
    workspace, agent, session, item = await _started(client, tmp_path)
    ledger = app.state.components.ledger
    unwritten, _ = await ledger.begin(
        pending_effect(
            workspace_write_key(uuid4(), 1),
            EffectKind.WORKSPACE_WRITE,
            now=datetime.now(UTC),
            session_id=UUID(session["id"]),
        )
    )
    assert await agent.pull(expect=204) is None
    other = await create(client, workspace=str(workspace), title="Another session")
    await act(client, other["id"], "start")
    elsewhere = await ready_task(client, session_id=other["id"])
    # Only that session's tasks wait.
    assert (await agent.pull())["task_id"] == elsewhere["id"]
    await agent.report(elsewhere["id"])
    assert await ledger.finish(unwritten, {"written": []})
    assert (await agent.pull())["task_id"] == item["id"]
