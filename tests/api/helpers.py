"""Small request helpers shared by the API tests."""

from __future__ import annotations

from typing import Any

import httpx

API = "/api/v1"


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"title": "Refactor auth middleware", "initial_prompt": "Split the module", **fields}
    response = await client.post(f"{API}/sessions", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def act(
    client: httpx.AsyncClient, session_id: str, action: str, expect: int = 200, **body: Any
) -> dict[str, Any]:
    response = await client.post(f"{API}/sessions/{session_id}/{action}", json=body or None)
    assert response.status_code == expect, response.text
    data: dict[str, Any] = response.json()
    return data


async def history(client: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/sessions/{session_id}/transitions")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()
    return data
