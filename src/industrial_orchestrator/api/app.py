"""The FastAPI application: routers, middleware and the lifespan that wires components."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from .. import bootstrap
from ..config import Settings
from ..dashboard import pages as dashboard
from ..dashboard import sign_in, webhook_pages
from ..dashboard.rendering import STATIC
from ..services.event_feed import EventFeed
from ..services.sessions import utc_now
from ..shutdown import bounded
from .agent_tokens import AgentTokens
from .api_reference import install_redoc
from .errors import install_error_handlers
from .metrics import Metrics
from .middleware import BodySizeLimit, RequestTelemetry
from .openapi_security import document_operator_auth
from .operation_ids import readable_operation_id
from .operator_auth import DOCS_ASSETS, OperatorAuth
from .rate_limits import RateLimit
from .routers import (
    agents,
    contexts,
    events,
    external_agents,
    operations,
    session_work,
    sessions,
    streams,
    tasks,
    webhooks,
)
from .schemas.events import wire_text

log = structlog.get_logger("industrial_orchestrator.api.app")

# Above the largest legal body (a 1 MiB checkpoint, JSON-escaped) with room to spare.
MAX_BODY_BYTES = 4 * 1024 * 1024
# The largest WebSocket frame the server reads (uvicorn's default is 16 MiB): clients
# send only small control messages, so a bigger frame is refused before it is buffered.
MAX_WEBSOCKET_FRAME_BYTES = 64 * 1024

DESCRIPTION = """
Control plane for autonomous AI coding agents.

Sessions move through a 12-state lifecycle; every transition is one guarded database
transaction with an append-only history. Errors always have the shape
`{"error": code, "message": text, "details": ...}`.

**Authentication.** Served on a non-loopback address (or with `AUTH_REQUIRED=true`), every
route but `/health`, `/ready`, the docs and the agents' protocol needs an operator token
(`orchestrator token create`), sent as `Authorization: Bearer orch_...`: 401 without one,
403 when a viewer's token asks for a change. External agents use the JWT they get at
registration, on `/api/v1/agents/external/...` only.
"""


API_SECTIONS = (
    "sessions",
    "tasks",
    "contexts",
    "external agents (EAP)",
    "agents",
    "events",
    "operations",
    "webhooks",
)
"""The API reference's sections, in this order whatever the order the routes are tried in."""


def create_app(
    settings: Settings,
    *,
    migrate: bool = True,
    require_auth: bool | None = None,
    trusted_hosts: list[str] | None = None,
    with_runtime: bool = True,
) -> FastAPI:
    """Build the app; its lifespan connects to the database (and migrates it by default).

    ``require_auth``: ask every caller for an operator token (``serve`` turns it on for a
    non-loopback bind); default ``AUTH_REQUIRED``. ``trusted_hosts``: answer only requests
    whose ``Host`` is one of these (400 otherwise), which defeats DNS rebinding; ``serve``
    always passes them, None (tests) checks nothing. ``with_runtime``: run the runtime
    (sessions, internal agents, reaping, webhooks) in this process too; without it the
    process serves HTTP only and another (``serve --no-http``) runs the runtime."""

    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components = await bootstrap.build(
            settings, migrate=migrate, listeners=[metrics.count_events]
        )
        runtime = bootstrap.build_runtime(components) if with_runtime else None
        feed = EventFeed(
            components.events,
            components.bus,
            render=wire_text,
            poll_seconds=settings.event_poll_seconds,
        )
        try:
            await feed.start()
            if runtime is not None:
                await runtime.start()
        except BaseException:
            if runtime is not None:
                await runtime.close()
            await bounded("event feed", feed.close())
            await components.close()
            raise
        app.state.components = components
        app.state.feed = feed
        app.state.runtime = runtime
        # Permission requests are asked of, and answered through, this process's OpenCode.
        app.state.opencode = runtime.opencode if runtime is not None else None
        try:
            yield
        finally:
            try:
                if runtime is not None:
                    await runtime.close()
                await bounded("event feed", feed.close())
            finally:
                await bounded("storage", components.close())

    # The API reference's scripts and styles come from a package, not a CDN: /docs and
    # /redoc render on a machine with no internet.
    app = FastAPIOffline(
        title=settings.app_name,
        version=settings.app_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        debug=False,
        static_url=DOCS_ASSETS,
        redoc_url=None,
        generate_unique_id_function=readable_operation_id,
        openapi_tags=[{"name": section} for section in API_SECTIONS],
    )
    install_redoc(app, DOCS_ASSETS)
    app.state.metrics = metrics
    app.state.agent_tokens = AgentTokens(
        settings.secret_key.get_secret_value(),
        lifetime=timedelta(minutes=settings.access_token_expire_minutes),
        clock=utc_now,
    )
    install_error_handlers(app)
    document_operator_auth(app)
    # The agents' protocol first: FastAPI tries the routes in order (a few microseconds
    # each), and a fleet's agents make most of the requests (asking for work, results,
    # heartbeats). Its paths share no prefix with the routers it now comes before.
    app.include_router(external_agents.router)
    app.include_router(sessions.router)
    app.include_router(session_work.router)
    app.include_router(tasks.router)
    app.include_router(contexts.router)
    app.include_router(agents.router)
    app.include_router(events.router)
    app.include_router(streams.router)
    app.include_router(operations.router)
    app.include_router(webhooks.router)
    app.include_router(dashboard.router)
    app.include_router(webhook_pages.router)
    app.include_router(sign_in.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Inside authentication: it counts per identified operator token.
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute)
    app.add_middleware(
        OperatorAuth,
        required=settings.auth_required if require_auth is None else require_auth,
        secret_key=settings.secret_key.get_secret_value(),
        allowed_origins=settings.allowed_origins,
    )
    # CORS outside authentication: a preflight carries no credential.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "If-Match",
            "X-Agent-ID",
            "X-CSRF-Token",
        ],
    )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestTelemetry, metrics=app.state.metrics)
    if trusted_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts)
    return app
