"""Sessions on one workspace work on branches of their own; the files two of them both
changed are reported (GET /sessions/{id}/conflicts, and on the session page) before
anyone merges the branches. Real git trees, made as the engine makes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from fastapi import FastAPI

from industrial_orchestrator.domain.sessions.session import WorktreeBinding

from .helpers import API, act, create


async def _working(app: FastAPI, client: httpx.AsyncClient, workspace: Path, title: str) -> Any:
    """A session with its own tree of ``workspace``, as the engine gives it one."""
    session = await create(client, title=title, workspace=str(workspace), auto_start=True)
    components = app.state.components
    binding = await components.trees.prepare(UUID(session["id"]), workspace)
    await components.sessions.bind_worktree(
        UUID(session["id"]),
        WorktreeBinding(str(binding.path), binding.branch, binding.base_commit),
    )
    return session, binding.path


async def test_sessions_on_one_workspace_report_the_files_both_changed(app, client, tmp_path):
    workspace = tmp_path / "repo"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("x = 1\n")
    (workspace / "README.md").write_text("hello\n")
    a, tree_a = await _working(app, client, workspace, "a")
    b, tree_b = await _working(app, client, workspace, "b")
    c, tree_c = await _working(app, client, workspace, "c")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    (elsewhere / "src").mkdir()
    _, tree_d = await _working(app, client, elsewhere, "d")
    (tree_a / "src" / "app.py").write_text("x = 2\n")
    (tree_a / "src" / "new.py").write_text("y = 1\n")
    (tree_b / "src" / "app.py").write_text("x = 3\n")
    (tree_c / "README.md").write_text("bye\n")
    (tree_d / "src" / "app.py").write_text("other repository\n")

    async def conflicts(session: dict[str, Any]) -> dict[str, Any]:
        response = await client.get(f"{API}/sessions/{session['id']}/conflicts")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    found = await conflicts(a)
    assert found["files"] == ["src/app.py", "src/new.py"]
    assert [(x["session_id"], x["files"]) for x in found["conflicts"]] == [
        (b["id"], ["src/app.py"])
    ]
    assert found["conflicts"][0]["branch"].startswith("orchestrator/")
    assert (await conflicts(c))["conflicts"] == []
    # A stopped session's branch may still be merged; a cancelled one's will not.
    await act(client, b["id"], "pause")
    assert len((await conflicts(a))["conflicts"]) == 1
    await act(client, b["id"], "cancel")
    assert (await conflicts(a))["conflicts"] == []
    created = await create(client, title="no tree yet", workspace=str(workspace))
    assert (await client.get(f"{API}/sessions/{created['id']}/conflicts")).status_code == 404
