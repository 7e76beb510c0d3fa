"""Every failure leaves the API in one JSON shape: ``{"error", "message", "details"}``.

Domain errors map to their status code here, once; anything unexpected is logged with its
traceback and answered with a bare 500 that leaks nothing.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..domain.errors import (
    Conflict,
    ExecutorUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    OrchestratorError,
    PayloadTooLarge,
    StorageUnavailable,
    Unauthorized,
    WorkspaceUnusable,
)

log = structlog.get_logger(__name__)

_STATUS: list[tuple[type[OrchestratorError], int]] = [
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (StorageUnavailable, 503),
    (ExecutorUnavailable, 503),
    (WorkspaceUnusable, 409),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def error_json(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": code, "message": message, "details": details}
    )


def status_of(error: OrchestratorError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


async def _orchestrator_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrchestratorError)
    response = error_json(status_of(exc), exc.code, exc.message, exc.details or None)
    if isinstance(exc, StorageUnavailable):
        response.headers["Retry-After"] = "1"
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            # A JSON syntax error's location is a character offset, not a field.
            "field": "body"
            if error.get("type") == "json_invalid"
            else _field(tuple(error.get("loc", ()))),
            "location": str(error.get("loc", ("body",))[0]),
            "message": error.get("msg", "invalid"),
            "type": error.get("type", "value_error"),
        }
        for error in exc.errors()
    ]
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return error_json(422, "validation_error", f"Invalid request: {summary}", problems)


CLOSE_BAD_REQUEST = 4400
# A close frame's reason holds at most 123 bytes.
MAX_CLOSE_REASON_BYTES = 123


async def _websocket_validation_error(websocket: WebSocket, exc: Exception) -> None:
    """A stream asked for with a malformed id or cursor is accepted and closed at once with
    4400 and what is wrong: refused during the handshake, the client would see only a bare
    HTTP 403."""
    assert isinstance(exc, WebSocketRequestValidationError)
    problems = "; ".join(
        f"{_field(tuple(error.get('loc', ())))}: {error.get('msg', 'invalid')}"
        for error in exc.errors()
    )
    reason = close_reason(f"invalid request: {problems}")
    await websocket.accept()
    await websocket.close(code=CLOSE_BAD_REQUEST, reason=reason)


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame can carry, on a character boundary."""
    encoded = text.encode()
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return text
    return encoded[: MAX_CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "..."


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's only 400 is a body it could not decode (e.g. not UTF-8): for the
        # client that is an invalid body like any other, so it gets the same 422.
        return error_json(
            422,
            "validation_error",
            f"Invalid request: body: {exc.detail}",
            [
                {
                    "field": "body",
                    "location": "body",
                    "message": str(exc.detail),
                    "type": "body_decode",
                }
            ],
        )
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    response = error_json(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", path=request.url.path, exc_info=exc)
    return error_json(500, "internal_error", "Internal server error; the log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrchestratorError, _orchestrator_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(WebSocketRequestValidationError, _websocket_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
