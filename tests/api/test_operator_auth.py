"""Operators' tokens at the door: bearer tokens for scripts, the dashboard's cookie with
its CSRF token, viewers who read only, agents' tokens kept to the agents' protocol, and
WebSocket handshakes checked for credential and Origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import load_settings
from industrial_orchestrator.domain.operator_tokens import COOKIE_NAME, Role, csrf_token

from ..backends import postgres_url_for, run_sync, truncate_all
from .helpers import API
from .test_external_agents import SECRET, register

pytestmark = pytest.mark.settings(auth_required=True, secret_key=SECRET)

BODY = {"title": "Guarded", "initial_prompt": "Only for operators"}


async def _token(app: FastAPI, name: str, role: Role) -> str:
    issued = await app.state.components.operator_tokens.create(name, role)
    secret: str = issued.secret
    return secret


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_without_a_token_only_the_open_paths_answer(client: httpx.AsyncClient) -> None:
    refused = await client.get(f"{API}/sessions")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"] == "unauthorized"
    assert "orchestrator token create" in refused.json()["message"]
    assert (await client.post(f"{API}/sessions", json=BODY)).status_code == 401
    assert (await client.get("/metrics")).status_code == 401
    open_paths = ["/health", "/ready", "/docs", "/openapi.json", "/login", "/static/dashboard.css"]
    for open_path in open_paths:
        assert (await client.get(open_path)).status_code == 200, open_path
    page = await client.get("/sessions?status=RUNNING")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fsessions%3Fstatus%3DRUNNING"


async def test_an_operator_acts_a_viewer_reads_and_a_revoked_token_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    operator = await _token(app, "alice", Role.OPERATOR)
    viewer = await _token(app, "dashboard-wall", Role.VIEWER)

    created = await client.post(f"{API}/sessions", json=BODY, headers=_bearer(operator))
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]

    listed = await client.get(f"{API}/sessions", headers=_bearer(viewer))
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    refused = await client.post(f"{API}/sessions/{session_id}/start", headers=_bearer(viewer))
    assert refused.status_code == 403
    assert "viewer" in refused.json()["message"]
    shown = await client.get(f"{API}/sessions/{session_id}", headers=_bearer(viewer))
    assert shown.json()["status"] == "PENDING"  # the viewer changed nothing

    await app.state.components.operator_tokens.revoke("alice")
    gone = await client.get(f"{API}/sessions", headers=_bearer(operator))
    assert gone.status_code == 401
    forged = await client.get(f"{API}/sessions", headers=_bearer(operator[:-2] + "xx"))
    assert forged.status_code == 401


async def test_agents_tokens_and_operators_tokens_each_open_only_their_own_door(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    agent = await register(client)  # the agents' protocol checks its own credentials
    assert (await agent.beat())["agent_id"] == agent.id
    on_operator_route = await client.get(f"{API}/sessions", headers=agent.headers())
    assert on_operator_route.status_code == 401

    operator = await _token(app, "bob", Role.OPERATOR)
    on_agent_route = await client.post(
        f"{API}/agents/external/{agent.id}/heartbeat",
        json={"status": "healthy"},
        headers={**_bearer(operator), "X-Agent-ID": agent.id},
    )
    assert on_agent_route.status_code == 401


async def test_the_dashboard_signs_in_with_a_cookie_and_its_changes_need_the_csrf_token(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    secret = await _token(app, "carol", Role.OPERATOR)
    wrong = await client.post("/login", data={"token": "orch_nope", "next": "/sessions"})
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text

    signed = await client.post("/login", data={"token": secret, "next": "/sessions"})
    assert signed.status_code == 303
    assert signed.headers["location"] == "/sessions"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}={secret};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie

    jar = {"Cookie": f"{COOKIE_NAME}={secret}"}
    page = await client.get("/sessions", headers=jar)
    assert page.status_code == 200
    expected = csrf_token(SECRET, secret)
    assert f'<meta name="csrf-token" content="{expected}">' in page.text
    assert "carol" in page.text

    without = await client.post(f"{API}/sessions", json=BODY, headers=jar)
    assert without.status_code == 403
    assert without.json()["error"] == "csrf_failed"
    forged = await client.post(
        f"{API}/sessions", json=BODY, headers={**jar, "X-CSRF-Token": "0" * 64}
    )
    assert forged.status_code == 403
    made = await client.post(
        f"{API}/sessions", json=BODY, headers={**jar, "X-CSRF-Token": expected}
    )
    assert made.status_code == 201, made.text

    # Signing out needs the page's token too, and drops the cookie.
    assert (await client.post("/logout", headers=jar, data={"csrf": "x"})).status_code == 403
    out = await client.post("/logout", headers=jar, data={"csrf": expected})
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert out.headers["set-cookie"].startswith(f'{COOKIE_NAME}="";')
    assert "Max-Age=0" in out.headers["set-cookie"]


async def test_signing_in_never_sends_the_browser_to_another_site(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    secret = await _token(app, "dave", Role.VIEWER)
    for target in ["//evil.example/x", "https://evil.example/", "/\\evil.example"]:
        signed = await client.post("/login", data={"token": secret, "next": target})
        assert signed.headers["location"] == "/", target


async def test_a_viewer_sees_the_dashboard_without_its_commands(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    operator = await _token(app, "erin", Role.OPERATOR)
    viewer = await _token(app, "frank", Role.VIEWER)
    created = await client.post(f"{API}/sessions", json=BODY, headers=_bearer(operator))
    session_id = created.json()["id"]
    header = await client.get(
        f"/sessions/{session_id}", params={"fragment": "header"}, headers=_bearer(viewer)
    )
    assert header.status_code == 200
    assert 'data-verb="start" disabled' in header.text  # PENDING: start, but not for a viewer
    as_operator = await client.get(
        f"/sessions/{session_id}", params={"fragment": "header"}, headers=_bearer(operator)
    )
    assert 'data-verb="start">' in as_operator.text


# -- WebSockets ----------------------------------------------------------------------


@pytest.fixture
def ws_http(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    overrides: dict[str, Any] = {
        "orchestrator_home": tmp_path / "home",
        "_env_file": None,
        "engine_enabled": False,
        "secret_key": SECRET,
    }
    if backend == "postgresql":
        database = request.getfixturevalue("postgres_database")
        run_sync(truncate_all, database)
        overrides["database_url"] = postgres_url_for(database)
    app = create_app(load_settings(**overrides), require_auth=True)
    with TestClient(app) as client:
        client.app_state = app.state  # type: ignore[attr-defined]
        yield client


def _ws_token(http: TestClient, name: str) -> str:
    async def make() -> str:
        tokens = http.app_state.components.operator_tokens  # type: ignore[attr-defined]
        issued = await tokens.create(name, Role.VIEWER)
        secret: str = issued.secret
        return secret

    return http.portal.call(make)  # type: ignore[union-attr]


def test_a_websocket_needs_a_credential_and_this_sites_origin(ws_http: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, ws_http.websocket_connect("/ws") as ws:
        ws.receive_json()
    assert closed.value.code == 4401
    assert "token is required" in closed.value.reason
    secret = _ws_token(ws_http, "wall")
    with ws_http.websocket_connect("/ws", headers=_bearer(secret)) as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    cookie = f"{COOKIE_NAME}={secret}"
    with ws_http.websocket_connect(
        "/ws", headers={"Cookie": cookie, "Origin": "http://testserver"}
    ) as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    # A page of another site, even in a browser that holds the cookie, is refused.
    with (
        pytest.raises(WebSocketDisconnect) as foreign,
        ws_http.websocket_connect(
            "/ws", headers={"Cookie": cookie, "Origin": "https://evil.example"}
        ) as ws,
    ):
        ws.receive_json()
    assert foreign.value.code == 4403
    assert "another site" in foreign.value.reason


def test_a_foreign_origin_is_refused_even_without_authentication(tmp_path: Path) -> None:
    settings = load_settings(
        orchestrator_home=tmp_path / "home", _env_file=None, engine_enabled=False
    )
    with TestClient(create_app(settings)) as http:
        with http.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:
            ws.send_json({"type": "ping"})
            assert ws.receive_json() == {"type": "pong"}
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            http.websocket_connect("/ws", headers={"Origin": "http://evil.example"}) as ws,
        ):
            ws.receive_json()
        assert closed.value.code == 4403
