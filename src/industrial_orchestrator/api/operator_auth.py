"""Who may use the API, the dashboard and the live streams.

When authentication is on (a non-loopback bind, or ``AUTH_REQUIRED=true``) every request
but the open ones below carries an operator token: ``Authorization: Bearer orch_...``
(scripts, CI) or the dashboard's cookie, set by signing in at ``/login``. A viewer's token
reads; only an operator's changes anything (403 otherwise). A change made with the cookie
must also carry the page's CSRF token (``X-CSRF-Token``), which another site cannot know.
Agents' EAP tokens are for ``/api/v1/agents/external`` only, and operator tokens are not
accepted there.

Whether or not authentication is on, a web page from another origin (not this server, not
listed in ``ALLOWED_HOSTS``) is an attacker on loopback: its WebSockets are refused (it could
read the event stream from the operator's browser), and so is every change it asks for
without a bearer token, whatever the content type (a form or ``text/plain`` post needs no
CORS preflight, and a local server with no token would otherwise run its prompt). A
bearer token cannot come from such a page: sending ``Authorization`` cross-origin needs a
preflight, which only listed origins are granted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.operator_tokens import (
    COOKIE_NAME,
    READ_METHODS,
    OperatorToken,
    csrf_token,
    same_token,
)
from ..services.operator_tokens import OperatorTokens
from .errors import error_json

log = structlog.get_logger("industrial_orchestrator.api.auth")

CSRF_HEADER = "x-csrf-token"
# WebSocket close codes of a refused stream: 4400 + the HTTP status they stand for.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
# Open to anyone: liveness, the API reference, the sign-in page and what it is drawn with,
# and the agents' own protocol (which checks agents' tokens itself).
OPEN_PATHS = frozenset(
    {"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
EAP_PREFIX = "/api/v1/agents/external/"
# Swagger UI's and ReDoc's scripts, served with the API reference that needs them.
DOCS_ASSETS = "/docs-assets"
OPEN_PREFIXES = (
    "/static/",
    "/login",
    "/logout",
    "/dashboard/states.css",
    f"{DOCS_ASSETS}/",
    EAP_PREFIX,
)


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def wants_page(path: str) -> bool:
    """A dashboard page, which a browser should be sent to sign in for, not a 401."""
    return not path.startswith(("/api/", "/ws", "/metrics"))


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """A browser's Origin is acceptable when it is this server itself, or listed."""
    if origin is None:
        return True  # not a browser: nothing to forge
    if origin in {o for o in allowed if o != "*"}:
        return True
    return host is not None and urlsplit(origin).netloc == host


def from_foreign_page(headers: Headers, allowed: Iterable[str]) -> bool:
    """Whether a browser sent this request for a page of another site. Browsers send
    ``Origin`` with every POST, PATCH and DELETE; ``Sec-Fetch-Site`` covers one that
    leaves it out (``Origin: null`` counts as foreign)."""
    origin = headers.get("origin")
    if origin is None:
        return headers.get("sec-fetch-site", "").lower() == "cross-site"
    return not origin_allowed(origin, headers.get("host"), allowed)


def bearer_credential(headers: Headers) -> str | None:
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


class OperatorAuth:
    """ASGI middleware: puts the caller's token in ``scope["state"]["operator"]``, or
    refuses the request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        required: bool,
        secret_key: str,
        allowed_origins: list[str],
    ) -> None:
        self.app = app
        self.required = required
        self.secret_key = secret_key
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        if scope["type"] == "websocket" and not origin_allowed(
            headers.get("origin"), headers.get("host"), self.allowed_origins
        ):
            log.warning("ws_foreign_origin", path=path, origin=headers.get("origin"))
            await _refuse_websocket(
                receive, send, CLOSE_FORBIDDEN, "connections from another site's page are refused"
            )
            return
        if (
            scope["type"] == "http"
            and scope["method"] not in READ_METHODS
            and from_foreign_page(headers, self.allowed_origins)
            and bearer_credential(headers) is None
        ):
            log.warning("http_foreign_origin", path=path, origin=headers.get("origin"))
            await error_json(
                403,
                "foreign_origin",
                f"A change asked for by a web page of another origin "
                f"({headers.get('origin', 'unknown')}) is refused: send a bearer token, or "
                "list the page's origin in ALLOWED_HOSTS",
            )(scope, receive, send)
            return
        scope.setdefault("state", {})
        scope["state"]["operator"] = None
        scope["state"]["csrf"] = None
        if not self.required or is_open(path):
            await self.app(scope, receive, send)
            return
        token, secret, by_cookie = await self._caller(scope, headers)
        if token is None:
            if scope["type"] == "websocket":
                await _refuse_websocket(
                    receive,
                    send,
                    CLOSE_UNAUTHORIZED,
                    "an operator token is required (Authorization header or sign-in cookie)",
                )
            elif wants_page(path) and scope["method"] in ("GET", "HEAD"):
                query = scope["query_string"].decode()
                target = path + (f"?{query}" if query else "")
                login = "/login?next=" + quote(target, safe="")
                await RedirectResponse(login, status_code=303)(scope, receive, send)
            else:
                refusal = error_json(
                    401,
                    "unauthorized",
                    "An operator token is required: send `Authorization: Bearer orch_...` "
                    "(made with `orchestrator token create`), or sign in at /login",
                )
                refusal.headers["WWW-Authenticate"] = "Bearer"
                await refusal(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if not token.may(method):
            await error_json(
                403,
                "forbidden",
                f"The token {token.name!r} is a viewer's: it reads, and cannot change anything",
            )(scope, receive, send)
            return
        assert secret is not None
        expected = csrf_token(self.secret_key, secret)
        if by_cookie and scope["type"] == "http" and method not in READ_METHODS:
            given = headers.get(CSRF_HEADER, "")
            if not same_token(expected, given):
                await error_json(
                    403,
                    "csrf_failed",
                    "A change made with the dashboard's sign-in must carry its CSRF token "
                    "(X-CSRF-Token); reload the page",
                )(scope, receive, send)
                return
        scope["state"]["operator"] = token
        scope["state"]["csrf"] = expected if by_cookie else None
        await self.app(scope, receive, send)

    async def _caller(
        self, scope: Scope, headers: Headers
    ) -> tuple[OperatorToken | None, str | None, bool]:
        tokens: OperatorTokens = scope["app"].state.components.operator_tokens
        secret = bearer_credential(headers)
        if secret is not None:
            return await tokens.authenticate(secret), secret, False
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE_NAME)
        if cookie:
            return await tokens.authenticate(cookie), cookie, True
        return None, None, False


async def _refuse_websocket(receive: Receive, send: Send, code: int, reason: str) -> None:
    """Accepted, then closed with ``code`` and ``reason``: a refusal before the handshake
    completes reaches the client as a bare HTTP 403 that says nothing of why."""
    message: Any = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code, "reason": reason})
