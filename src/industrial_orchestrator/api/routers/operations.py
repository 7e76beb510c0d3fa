"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from ...executors.opencode.model_setting import model_setting
from ...storage.migrate import current_revision, head_revision
from ..dependencies import AppComponents, AppMetrics

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    """The process is up and serving requests; says nothing about its dependencies."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness",
    responses={503: {"description": "Database unreachable or schema not current"}},
)
async def ready(components: AppComponents) -> JSONResponse:
    """200 when the database answers and its schema is at the newest migration; 503
    (with what failed) otherwise. ``details.model`` says which model the internal agents
    will ask, as far as the settings tell (``configured``: true, false when none is and
    OpenCode's own default applies, null when an external OpenCode server decides); it
    never makes the server unready: a provider is only checked by using it."""
    checks: dict[str, Any] = {}
    try:
        async with components.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, head = await current_revision(components.engine), head_revision()
        checks["migrations"] = (
            "ok" if current == head else f"schema at {current or 'nothing'}, code needs {head}"
        )
    except Exception as exc:  # the point of the probe is to report any failure
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ok = all(value == "ok" for value in checks.values()) and "migrations" in checks
    details = {"model": model_setting(components.settings).details()}
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks, "details": details},
        status_code=200 if ok else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(components: AppComponents, registry: AppMetrics) -> Response:
    """Prometheus text format. Gauges are read from the database at scrape time, so every
    replica reports the cluster's truth."""
    registry.active_sessions.set(await components.sessions.count_running())
    registry.active_agents.set(await components.agents.count_active())
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
