"""Health, readiness, Prometheus metrics, OpenAPI docs and structured logs."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import load_settings
from industrial_orchestrator.logs import configure_logging
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import head_revision

from ..backends import postgres_url_for, terminate_connections, truncate_all
from .helpers import API, act, create


async def test_health(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_database_is_current(client):
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "migrations": "ok"}


async def test_not_ready_when_schema_is_behind(client, app):
    engine = app.state.components.engine
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    try:
        response = await client.get("/ready")
    finally:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()}
            )
    assert response.status_code == 503
    assert "schema at old" in response.json()["checks"]["migrations"]


@pytest.fixture
async def postgres_app(postgres_database, tmp_path) -> AsyncIterator[FastAPI]:
    """The app on PostgreSQL whatever the backend parameter: these tests break its link."""
    await truncate_all(postgres_database)
    settings = load_settings(
        database_url=postgres_url_for(postgres_database),
        orchestrator_home=tmp_path,
        # Nothing in the background may meet a dropped connection before the request does.
        engine_enabled=False,
        internal_agents=False,
        _env_file=None,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def pointed_at_a_closed_port(holder: Any) -> AsyncIterator[None]:
    """Swap ``holder.engine`` for one whose database does not answer, then restore it."""
    reachable = holder.engine
    holder.engine = create_engine(reachable.url.set(port=1), pool_size=1)
    try:
        yield
    finally:
        await holder.engine.dispose()
        holder.engine = reachable


def http_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_not_ready_when_postgresql_is_unreachable(postgres_app):
    async with (
        pointed_at_a_closed_port(postgres_app.state.components),
        http_client(postgres_app) as http,
    ):
        response = await http.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


async def test_requests_get_503_while_postgresql_is_unreachable(postgres_app):
    async with (
        pointed_at_a_closed_port(postgres_app.state.components.uow),
        http_client(postgres_app) as http,
    ):
        read = await http.get(f"{API}/sessions")
        write = await http.post(f"{API}/sessions", json={"title": "t", "initial_prompt": "p"})
    for response in (read, write):
        assert response.status_code == 503
        assert response.json()["error"] == "database_unavailable"
        assert response.headers["retry-after"] == "1"
    async with http_client(postgres_app) as http:
        assert (await http.get(f"{API}/sessions")).status_code == 200


async def test_dropped_connections_answer_503_once_then_recover(postgres_app, postgres_database):
    """As after a PostgreSQL restart: pooled connections die under the app."""
    async with http_client(postgres_app) as http:
        session = await create(http)
        await terminate_connections(postgres_database)
        statuses = [
            (await http.get(f"{API}/sessions/{session['id']}")).status_code for _ in range(3)
        ]
    # The first to meet a dead connection gets the 503 and has the pool renewed: that is
    # the request, unless a loop of the app's own (the event feed, the reaper) read the
    # database just before it. Never a 500, and served again at once.
    assert statuses[0] in (503, 200)
    assert statuses[1:] == [200, 200]


async def test_metrics_expose_the_four_guide_metrics(client):
    session = await create(client, auto_start=True)
    await create(client, auto_start=True)
    await act(client, session["id"], "complete")
    await client.get(f"{API}/sessions/{session['id']}")
    await client.get(f"{API}/sessions/not-a-uuid")
    body = (await client.get("/metrics")).text
    assert "orchestrator_active_sessions 1.0" in body
    assert 'orchestrator_tasks_total{outcome="success"}' in body
    assert "orchestrator_active_agents" in body
    assert (
        'http_request_duration_seconds_count{method="GET",route="/api/v1/sessions/{session_id}",'
        'status="200"} 1.0' in body
    )
    assert 'route="/api/v1/sessions/{session_id}",status="422"' in body
    assert session["id"] not in body, "raw paths must never become labels"


async def test_tasks_are_counted_by_outcome_as_they_end(client):
    async def run_to(status: str) -> None:
        created = await client.post(f"{API}/tasks", json={"title": "t", "task_type": "testing"})
        assert created.status_code == 201, created.text
        for step in ("READY", "RUNNING", status):
            moved = await client.patch(f"{API}/tasks/{created.json()['id']}", json={"status": step})
            assert moved.status_code == 200, moved.text

    def counted(body: str, outcome: str) -> str:
        line = next(
            line
            for line in body.splitlines()
            if line.startswith(f'orchestrator_tasks_total{{outcome="{outcome}"}}')
        )
        return line.split()[-1]

    await run_to("COMPLETED")
    await run_to("COMPLETED")
    await run_to("FAILED")
    body = (await client.get("/metrics")).text
    assert (counted(body, "success"), counted(body, "failure")) == ("2.0", "1.0")


async def test_unmatched_paths_share_one_label(client):
    await client.get("/no/such/path/1")
    await client.get("/no/such/path/2")
    body = (await client.get("/metrics")).text
    assert 'route="<unmatched>",status="404"} 2.0' in body


async def test_openapi_describes_every_route(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for action in ("start", "pause", "resume", "complete", "fail", "cancel", "stop", "retry"):
        operation = paths[f"/api/v1/sessions/{{session_id}}/{action}"]["post"]
        assert operation["summary"]
        assert "409" in operation["responses"]
    for path in (
        "/api/v1/sessions",
        "/api/v1/sessions/stats",
        "/api/v1/sessions/states",
        "/api/v1/sessions/{session_id}/transitions",
        "/api/v1/sessions/{session_id}/checkpoints",
        "/health",
        "/ready",
        "/metrics",
    ):
        assert path in paths
    schemas = spec["components"]["schemas"]
    assert {"SessionCreate", "SessionRead", "ErrorBody", "CheckpointCreate"} <= set(schemas)
    assert schemas["SessionCreate"]["properties"]["title"]["description"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_logs_are_json_lines_with_the_guide_fields(client, capsys):
    configure_logging("INFO")
    try:
        session = await create(client, auto_start=True)
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    finally:
        logging.getLogger().handlers.clear()
    started = [line for line in lines if line["event"] == "session_started"]
    assert started, lines
    assert started[0]["session_id"] == session["id"]
    assert started[0]["level"] == "info"
    assert started[0]["logger"] == "industrial_orchestrator.services.session"
    assert started[0]["timestamp"].endswith("Z")


NO_MODEL = {
    "engine_enabled": True,
    "internal_agents": True,
    "opencode_bin": "/nonexistent/opencode",
    "opencode_host": None,
    "opencode_model": None,
    "opencode_config": None,
    "opencode_agents": None,
}


@pytest.mark.settings(**NO_MODEL)
async def test_ready_details_say_that_no_model_is_configured_without_failing_readiness(client):
    response = await client.get("/ready")
    assert response.status_code == 200
    model = response.json()["details"]["model"]
    assert model["internal_agents"] is True
    assert model["configured"] is False
    assert model["model"] is None
    assert "OPENCODE_MODEL=provider/model" in model["summary"]


@pytest.mark.settings(**{**NO_MODEL, "opencode_model": "scripted/coder"})
async def test_ready_details_name_the_configured_model_and_its_setting(client):
    model = (await client.get("/ready")).json()["details"]["model"]
    assert (model["configured"], model["model"], model["source"]) == (
        True,
        "scripted/coder",
        "OPENCODE_MODEL",
    )
