"""A small synchronous client of the REST API (``/api/v1``) for the CLI.

Every call returns the decoded JSON together with the exact text the server sent, so
``--json`` can print the API's own document. Failures become ``CliError``s: the server's
``{"error", "message", "details"}`` as ``ApiError``, no answer as ``ServerUnreachable``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import __version__
from .errors import ApiError, CliError, ServerUnreachable, describe

API_PREFIX = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 10.0
MAX_PAGE_SIZE = 100  # the API's limit on page_size
TOKEN_VARIABLE = "ORCHESTRATOR_TOKEN"

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """One successful answer: status code, decoded body and the body as sent."""

    status: int
    body: Any
    text: str


def base_url(url: str) -> str:
    """``url`` without a trailing slash, refused unless it is http(s)://host[:port][/path]."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"--url must look like http://HOST:PORT, got {url!r}")
    return url.strip().rstrip("/")


def websocket_url(url: str, path: str) -> str:
    """The ws:// (or wss:// for https) address of ``path`` on the server at ``url``."""
    base = base_url(url)
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


def operator_headers() -> dict[str, str]:
    """The operator token of ``ORCHESTRATOR_TOKEN`` as a bearer header, when it is set (a
    server on a non-loopback address, or with AUTH_REQUIRED, asks for one)."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


class ApiClient:
    """Sessions over HTTP. Use as a context manager; it owns one connection pool."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = base_url(url)
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            timeout=timeout,
            headers={"User-Agent": f"orchestrator-cli/{__version__}", **operator_headers()},
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def create_session(self, body: Json) -> Reply:
        return self._call("POST", "/sessions", json=body)

    def list_sessions(
        self,
        *,
        statuses: Sequence[str] = (),
        priorities: Sequence[str] = (),
        text: str | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> Reply:
        params: list[tuple[str, str | int]] = [("page", page), ("page_size", page_size)]
        params += [("status", s) for s in statuses]
        params += [("priority", p) for p in priorities]
        if text:
            params.append(("q", text))
        return self._call("GET", "/sessions", params=params)

    def sessions_window(
        self,
        *,
        offset: int,
        limit: int,
        statuses: Sequence[str] = (),
        priorities: Sequence[str] = (),
        text: str | None = None,
    ) -> Json:
        """``{"items", "total", "offset", "limit"}``: the sessions from ``offset`` on.

        The API pages by ``page`` and ``page_size``; a window that does not start on a
        page boundary is cut from two neighbouring pages of ``limit`` sessions.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise CliError(f"--limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
        page, skip = divmod(offset, limit)
        filters: dict[str, Any] = {"statuses": statuses, "priorities": priorities, "text": text}
        first = self.list_sessions(page=page + 1, page_size=limit, **filters).body
        items: list[Json] = first["items"][skip:]
        total: int = first["total"]
        if skip and total > (page + 1) * limit:
            second = self.list_sessions(page=page + 2, page_size=limit, **filters).body
            items += second["items"][: limit - len(items)]
            total = second["total"]
        return {"items": items, "total": total, "offset": offset, "limit": limit}

    def get_session(self, session_id: str) -> Reply:
        return self._call("GET", f"/sessions/{session_id}")

    def events(self, session_id: str, *, since: int, limit: int = 1000) -> Reply:
        """``{items, next_since}``: the session's stored events with ``seq > since``."""
        return self._call(
            "GET", f"/sessions/{session_id}/events", params={"since": since, "limit": limit}
        )

    def transitions(self, session_id: str) -> Reply:
        return self._call("GET", f"/sessions/{session_id}/transitions")

    def session_tasks(self, session_id: str) -> list[Json]:
        """Every task of the session, in creation order (its plan's order)."""
        tasks: list[Json] = []
        page = 1
        while True:
            params = {"session_id": session_id, "page": page, "page_size": MAX_PAGE_SIZE}
            body = self._call("GET", "/tasks", params=params).body
            tasks += body["items"]
            if not body["items"] or len(tasks) >= body["total"]:
                return tasks
            page += 1

    def get_agent(self, agent_id: str) -> Reply:
        return self._call("GET", f"/agents/{agent_id}")

    def act(
        self,
        session_id: str,
        action: str,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Reply:
        """``POST /sessions/{id}/{action}`` for start, pause, resume, stop and cancel."""
        body: Json = {}
        if reason is not None:
            body["reason"] = reason
        if expected_version is not None:
            body["expected_version"] = expected_version
        return self._call("POST", f"/sessions/{session_id}/{action}", json=body or None)

    def retry(self, session_id: str, *, start: bool = False) -> Reply:
        return self._call("POST", f"/sessions/{session_id}/retry", json={"start": start})

    def _call(self, method: str, path: str, **kwargs: Any) -> Reply:
        with self._transport_errors():
            response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise _api_error(response)
        try:
            body = response.json()
        except ValueError:
            raise CliError(
                f"the server at {self.url} answered {method} {path} with HTTP "
                f"{response.status_code} and a body that is not JSON: is it an orchestrator?"
            ) from None
        return Reply(response.status_code, body, response.text)

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectTimeout as exc:
            raise ServerUnreachable(self.url, describe(exc)) from None
        except httpx.TimeoutException:
            raise CliError(
                f"the server at {self.url} did not answer within {self._http.timeout.read} s"
            ) from None
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.url, describe(exc)) from None


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("error")
        message = body["message"]
        if response.status_code == 401:
            message += f" (this command sends the token in {TOKEN_VARIABLE})"
        return ApiError(
            message,
            status=response.status_code,
            code=code if isinstance(code, str) else None,
        )
    return ApiError(
        f"HTTP {response.status_code} {response.reason_phrase} from "
        f"{response.request.method} {response.request.url}",
        status=response.status_code,
        code=None,
    )
