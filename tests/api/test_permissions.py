"""Permission requests of a session's agents (GET/POST /sessions/{id}/permissions): a
session that does not exist is a 404; one that exists and cannot have requests (no tree
yet, no OpenCode configured) has none, and answering one of them is a 404 that says why;
only an OpenCode that is configured but cannot be asked is a 503. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from industrial_orchestrator.domain.sessions.session import WorktreeBinding
from industrial_orchestrator.executors.opencode.client import OpenCodeClient
from industrial_orchestrator.executors.opencode.server import ExternalServer, MissingServer
from tests.server_process import free_port

from .helpers import API, create

REPLY = {"request_id": "per_missing", "reply": "once"}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    (path / "README.md").write_text("hello\n")
    return path


async def _with_tree(app: FastAPI, client: httpx.AsyncClient, workspace: Path) -> str:
    """A session with its own tree of ``workspace``, as the engine gives it one."""
    session = await create(client, workspace=str(workspace), auto_start=True)
    components = app.state.components
    binding = await components.trees.prepare(UUID(session["id"]), workspace)
    await components.sessions.bind_worktree(
        UUID(session["id"]), WorktreeBinding(str(binding.path), binding.branch, binding.base_commit)
    )
    return str(session["id"])


async def test_an_unknown_session_is_404_whatever_opencode_is(client):
    missing = uuid.uuid4()
    listed = await client.get(f"{API}/sessions/{missing}/permissions")
    assert listed.status_code == 404, listed.text
    assert listed.json()["error"] == "not_found"
    answered = await client.post(f"{API}/sessions/{missing}/permissions", json=REPLY)
    assert answered.status_code == 404, answered.text
    assert "does not exist" in answered.json()["message"]


async def test_a_session_without_a_tree_has_no_requests(client):
    session = await create(client)
    listed = await client.get(f"{API}/sessions/{session['id']}/permissions")
    assert listed.status_code == 200, listed.text
    assert listed.json() == []
    answered = await client.post(f"{API}/sessions/{session['id']}/permissions", json=REPLY)
    assert answered.status_code == 404, answered.text
    message = answered.json()["message"]
    assert "per_missing" in message
    assert "no working tree yet" in message


async def test_without_opencode_configured_a_session_has_no_requests(app, client, workspace):
    session_id = await _with_tree(app, client, workspace)
    for runtime in (None, SimpleNamespace(server=MissingServer("no binary on PATH"))):
        app.state.opencode = runtime
        listed = await client.get(f"{API}/sessions/{session_id}/permissions")
        assert listed.status_code == 200, listed.text
        assert listed.json() == []
        answered = await client.post(f"{API}/sessions/{session_id}/permissions", json=REPLY)
        assert answered.status_code == 404, answered.text
        assert answered.json()["details"]["request_id"] == "per_missing"
        assert "no OpenCode is configured" in answered.json()["message"]


async def test_a_configured_opencode_that_does_not_answer_is_503(app, client, workspace):
    session_id = await _with_tree(app, client, workspace)
    server = ExternalServer(f"http://127.0.0.1:{free_port()}", "pw", timeout_seconds=1)
    await server.start()  # logs that nobody answers, and stays configured
    app.state.opencode = SimpleNamespace(server=server)
    try:
        listed = await client.get(f"{API}/sessions/{session_id}/permissions")
        assert listed.status_code == 503, listed.text
        answered = await client.post(f"{API}/sessions/{session_id}/permissions", json=REPLY)
        assert answered.status_code == 503, answered.text
    finally:
        await server.close()


async def test_pending_requests_are_listed_and_answered(app, client, workspace):
    session_id = await _with_tree(app, client, workspace)
    pending = [
        {
            "id": "per_1",
            "permission": "bash",
            "patterns": ["echo hi"],
            "sessionID": "ses_1",
            "metadata": {},
        }
    ]
    replies: list[tuple[str, dict[str, Any]]] = []

    def opencode(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/permission":
            return httpx.Response(200, json=pending)
        if request.method == "POST" and request.url.path == "/permission/per_1/reply":
            replies.append((request.url.params["directory"], json.loads(request.content)))
            return httpx.Response(200, json=True)
        return httpx.Response(404, json={"name": "NotFound"})

    server = _answering(app, opencode)
    try:
        listed = await client.get(f"{API}/sessions/{session_id}/permissions")
        assert listed.status_code == 200, listed.text
        assert [(p["id"], p["permission"], p["patterns"]) for p in listed.json()] == [
            ("per_1", "bash", ["echo hi"])
        ]
        unknown = await client.post(f"{API}/sessions/{session_id}/permissions", json=REPLY)
        assert unknown.status_code == 404, unknown.text
        assert "answered already, or never asked" in unknown.json()["message"]
        assert replies == []
        answered = await client.post(
            f"{API}/sessions/{session_id}/permissions",
            json={"request_id": "per_1", "reply": "reject", "message": "not now"},
        )
        assert answered.status_code == 200, answered.text
        assert answered.json() == {"request_id": "per_1", "reply": "reject"}
        session = (await client.get(f"{API}/sessions/{session_id}")).json()
        assert replies == [(session["worktree"], {"reply": "reject", "message": "not now"})]
    finally:
        await server.close()


async def test_what_the_agent_put_in_a_request_is_shown_with_u_fffd(app, client, workspace):
    """A request's patterns and metadata are the agent's tool input: a lone surrogate or a
    NUL in them (JSON carries both) becomes U+FFFD where OpenCode's answer is read, so
    neither the API nor the session page fails on it."""
    session_id = await _with_tree(app, client, workspace)
    pending = [
        {
            "id": "per_1",
            "permission": "bash",
            "patterns": ["cat bad\ud800.py"],
            "sessionID": "ses_1",
            "metadata": {"command": "cat bad\ud800.py\x00", "path\udcff": ["x\ud800"]},
        }
    ]
    # Escaped as OpenCode's JSON would carry them; httpx's own encoder refuses a surrogate.
    answer = json.dumps(pending).encode()
    assert b"\\ud800" in answer

    def opencode(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/permission":
            return httpx.Response(200, content=answer, headers={"content-type": "application/json"})
        return httpx.Response(404, json={"name": "NotFound"})

    server = _answering(app, opencode)
    try:
        listed = await client.get(f"{API}/sessions/{session_id}/permissions")
        assert listed.status_code == 200, listed.text
        [shown] = listed.json()
        assert shown["patterns"] == ["cat bad\ufffd.py"]
        assert shown["metadata"] == {"command": "cat bad\ufffd.py\ufffd", "path\ufffd": ["x\ufffd"]}
        page = await client.get(f"/sessions/{session_id}", params={"fragment": "permissions"})
        assert page.status_code == 200, page.text
        assert "cat bad\ufffd.py" in page.text
    finally:
        await server.close()


def _answering(app: Any, opencode: Any) -> ExternalServer:
    """The app's OpenCode, answered by ``opencode`` (a handler of requests) instead."""
    server = ExternalServer("http://opencode.test", "pw", timeout_seconds=1)
    server.client = OpenCodeClient(
        "http://opencode.test", "pw", transport=httpx.MockTransport(opencode)
    )
    app.state.opencode = SimpleNamespace(server=server)
    return server
