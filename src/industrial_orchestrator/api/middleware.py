"""ASGI middleware: request body cap, and per-request latency metric + log line."""

from __future__ import annotations

import contextlib
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_json
from .metrics import Metrics

log = structlog.get_logger("industrial_orchestrator.api.requests")

UNMATCHED_ROUTE = "<unmatched>"


class BodySizeLimit:
    """Refuses bodies over ``max_bytes`` with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False
        too_large = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # The app may catch the exception raised in ``receive`` and answer for itself
            # (FastAPI turns any failure to read a body into "cannot parse", a 400 our
            # handlers make 422): a body that was cut off is a 413 whatever it answers.
            if too_large:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        # Raised from our receive when the app lets it through: the 413 below answers.
        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if too_large and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = error_json(
            413,
            "payload_too_large",
            f"Request body exceeds the limit of {self.max_bytes} bytes",
            {"limit": self.max_bytes},
        )
        await refusal(scope, receive, send)


class _TooLarge(Exception):
    pass


class RequestTelemetry:
    """Observes latency by route template (never the raw path, which would explode the
    label set) and logs one line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.metrics.http_request_duration.labels(
                method=scope["method"], route=template, status=str(status)
            ).observe(elapsed)
            log.debug(
                "http_request",
                method=scope["method"],
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
            )
