"""An async client for the OpenCode server's HTTP API (opencode 1.18, ``GET /doc``).

One server serves many workspaces: every call names its project with ``?directory=``.
Every call has a timeout. Calls that cannot do harm twice (reads, abort, permission
replies) are retried a few times on connection errors, timeouts and 5xx; a prompt is
retried only when it never reached the server (a connection refused), so a slow answer
never sends the same prompt twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import structlog
from httpx_sse import SSEError, aconnect_sse
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from ...domain.storable_text import storable_json

log = structlog.get_logger("industrial_orchestrator.executors.opencode")

USERNAME = "opencode"
PermissionReply = Literal["once", "always", "reject"]


class OpenCodeError(Exception):
    """OpenCode could not do what was asked; the message says why."""


class OpenCodeUnreachable(OpenCodeError):
    """No OpenCode server answers at the configured address."""


class OpenCodeAuthRefused(OpenCodeError):
    """The server refused our password."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    provider_id: str
    model_id: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """``provider/model`` (the model may contain slashes itself)."""
        provider, _, model = text.strip().partition("/")
        if not provider or not model:
            raise ValueError(f"expected a model as provider/model, got {text!r}")
        return cls(provider, model)

    def __str__(self) -> str:
        return f"{self.provider_id}/{self.model_id}"


class _Retryable(Exception):
    """A failure worth another try."""

    def __init__(self, error: OpenCodeError) -> None:
        super().__init__(str(error))
        self.error = error


class OpenCodeClient:
    def __init__(
        self,
        base_url: str,
        password: str | None,
        *,
        timeout_seconds: float = 15.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._attempts = attempts
        self._timeout = timeout_seconds
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(USERNAME, password) if password else None,
            timeout=httpx.Timeout(timeout_seconds),
            transport=transport,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> OpenCodeClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- server ---------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``{"healthy": true, "version": ...}``."""
        return dict(await self._call("GET", "/global/health"))

    # -- sessions -------------------------------------------------------------

    async def create_session(
        self,
        directory: str,
        title: str,
        *,
        permission: list[dict[str, Any]] | None = None,
    ) -> str:
        body: dict[str, Any] = {"title": title[:200]}
        if permission is not None:
            body["permission"] = permission
        created = await self._call(
            "POST", "/session", directory=directory, json=body, idempotent=False
        )
        return str(created["id"])

    async def prompt(
        self,
        session_id: str,
        directory: str,
        text: str,
        *,
        model: ModelRef | None = None,
        agent: str | None = None,
        system: str | None = None,
    ) -> None:
        """Start a turn and return at once (the answer arrives on the event stream).
        Without ``model``, the server's configured default answers."""
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        if model is not None:
            body["model"] = {"providerID": model.provider_id, "modelID": model.model_id}
        if agent:
            body["agent"] = agent
        if system:
            body["system"] = system
        await self._call(
            "POST",
            f"/session/{session_id}/prompt_async",
            directory=directory,
            json=body,
            idempotent=False,
        )

    async def messages(self, session_id: str, directory: str) -> list[dict[str, Any]]:
        """The session's messages, each ``{"info": {...}, "parts": [...]}``."""
        return list(await self._call("GET", f"/session/{session_id}/message", directory=directory))

    async def diff(
        self, session_id: str, directory: str, message_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The files the session changed, each with its ``patch``: text an agent wrote, so
        made storable (``domain.storable_text``) like the rest of its output."""
        params = {"messageID": message_id} if message_id else None
        return _storable_list(
            await self._call(
                "GET", f"/session/{session_id}/diff", directory=directory, params=params
            )
        )

    async def abort(self, session_id: str, directory: str) -> bool:
        return bool(await self._call("POST", f"/session/{session_id}/abort", directory=directory))

    async def statuses(self, directory: str) -> dict[str, dict[str, Any]]:
        """Sessions that are not idle, by id: ``{"type": "busy" | "retry", ...}``."""
        return dict(await self._call("GET", "/session/status", directory=directory))

    # -- permissions ----------------------------------------------------------

    async def permissions(self, directory: str) -> list[dict[str, Any]]:
        """The pending permission requests. Their patterns and metadata are the agent's
        tool input (paths, commands), so they are made storable here, where they come in:
        a lone surrogate in them would break every page and response that shows them."""
        return _storable_list(await self._call("GET", "/permission", directory=directory))

    async def reply_permission(
        self,
        request_id: str,
        directory: str,
        reply: PermissionReply,
        message: str | None = None,
    ) -> bool:
        body: dict[str, Any] = {"reply": reply}
        if message:
            body["message"] = message
        return bool(
            await self._call(
                "POST", f"/permission/{request_id}/reply", directory=directory, json=body
            )
        )

    # -- events ---------------------------------------------------------------

    async def events(self, directory: str) -> AsyncIterator[dict[str, Any]]:
        """The server's events for one project, as ``{"type", "properties"}`` dicts, until
        the stream ends. Silence is bounded by the server's 10 s heartbeat."""
        timeout = httpx.Timeout(self._timeout, read=max(30.0, self._timeout))
        try:
            async with aconnect_sse(
                self._http, "GET", "/event", params={"directory": directory}, timeout=timeout
            ) as source:
                if source.response.status_code >= 400:
                    await source.response.aread()
                    _check(source.response)
                async for message in source.aiter_sse():
                    if not message.data:
                        continue
                    try:
                        event = message.json()
                    except ValueError:
                        continue  # not ours to judge; the next one may be fine
                    if isinstance(event, dict) and isinstance(event.get("type"), str):
                        yield event
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        except SSEError as exc:
            raise OpenCodeError(f"OpenCode's event stream is not an event stream: {exc}") from exc

    # -- plumbing -------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        directory: str | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> Any:
        query = dict(params or {})
        if directory is not None:
            query["directory"] = directory
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(method, path, query, json, idempotent)
        except _Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self, method: str, path: str, query: dict[str, str], body: Any, idempotent: bool
    ) -> Any:
        try:
            response = await self._http.request(method, path, params=query, json=body)
        except httpx.ConnectError as exc:
            raise _Retryable(self._unreachable(exc)) from exc
        except httpx.TransportError as exc:
            error = OpenCodeError(
                f"OpenCode at {self.base_url} did not answer {method} {path}: "
                f"{type(exc).__name__} {exc}".rstrip()
            )
            if idempotent:
                raise _Retryable(error) from exc
            raise error from exc
        if response.status_code >= 500 and idempotent:
            raise _Retryable(_refusal(method, path, response))
        _check(response, method, path)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise OpenCodeError(
                f"OpenCode answered {method} {path} with something that is not JSON"
            ) from exc

    def _unreachable(self, exc: Exception) -> OpenCodeUnreachable:
        return OpenCodeUnreachable(
            f"No OpenCode server answers at {self.base_url} ({type(exc).__name__}). "
            "Start one (`opencode serve`) and set OPENCODE_HOST/OPENCODE_PORT, or install "
            "opencode (OPENCODE_BIN or PATH) so the orchestrator starts its own."
        )


def _storable_list(answer: Any) -> list[Any]:
    # JSON can carry a lone surrogate (``\ud800``) or a NUL into Python; U+FFFD for each.
    return list(storable_json(list(answer)))


def _check(response: httpx.Response, method: str = "GET", path: str = "/event") -> None:
    if response.status_code == 401:
        raise OpenCodeAuthRefused(
            f"OpenCode refused our credentials ({method} {path} -> 401): set OPENCODE_PASSWORD "
            "to the server's OPENCODE_SERVER_PASSWORD"
        )
    if response.status_code >= 400:
        raise _refusal(method, path, response)


def _refusal(method: str, path: str, response: httpx.Response) -> OpenCodeError:
    text = response.text[:500]
    return OpenCodeError(f"OpenCode answered {method} {path} with {response.status_code}: {text}")
