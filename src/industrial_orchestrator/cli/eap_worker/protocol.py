"""The External Agent Protocol on the wire: where its endpoints are, how long a request may
take, and what a refusal says.

Every request of the worker goes through one ``httpx.AsyncClient`` (``connect``) rooted at
the server's URL; the endpoints are under ``EAP``. A refusal carries the server's error
shape, ``{"error": <code>, "message": <words>}``: the code decides what the worker does
(``lease_lost``, ``agent_removed``, ``agent_not_accepting``), the message is what it prints.
"""

from __future__ import annotations

from typing import Any

import httpx

from ... import __version__
from ..api_client import API_PREFIX

EAP = f"{API_PREFIX}/agents/external"
PROTOCOL_VERSION = "1.0"
REQUEST_TIMEOUT_SECONDS = 10.0
RETRY_SECONDS = 1.0  # before a request that went unanswered or was refused is sent again

Json = dict[str, Any]


def connect(url: str) -> httpx.AsyncClient:
    """The client every request of the worker goes through: ``url`` as base, a
    ``REQUEST_TIMEOUT_SECONDS`` timeout unless a request says otherwise."""
    return httpx.AsyncClient(
        base_url=url,
        timeout=REQUEST_TIMEOUT_SECONDS,
        headers={"User-Agent": f"orchestrator-worker/{__version__}"},
    )


def error_code(response: httpx.Response) -> str | None:
    """The server's ``error`` code, if its answer has one."""
    body = _body(response)
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def error_message(response: httpx.Response) -> str:
    """The server's ``message``, else the status line."""
    body = _body(response)
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str):
        return message
    return f"HTTP {response.status_code} {response.reason_phrase}"


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
