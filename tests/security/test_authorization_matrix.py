"""Every route of the API against every kind of caller that must be refused: no
credential, an agent's token on an operator's route, an operator's token on an agent's
route, an agent acting as another agent, a viewer asking for a change. The matrix is
built from the app's own OpenAPI document, so a route added later is checked too."""

from __future__ import annotations

import re
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from industrial_orchestrator.domain.operator_tokens import READ_METHODS, Role
from tests.api.test_external_agents import SECRET, register

pytestmark = pytest.mark.settings(auth_required=True, secret_key=SECRET)

EAP = "/api/v1/agents/external"
OPEN = {"/health", "/ready", "/metrics"}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every operation in the app's OpenAPI document."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _concrete(path: str, agent_id: str) -> str:
    """The path with its parameters filled: the agent's id where an agent is named, a
    fresh UUID elsewhere (refusals come before any lookup)."""
    path = path.replace("{agent_id}", agent_id)
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid4()), path)


async def test_no_caller_gets_through_a_door_that_is_not_its_own(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    tokens = app.state.components.operator_tokens
    operator = (await tokens.create("ops", Role.OPERATOR)).secret
    viewer = (await tokens.create("wall", Role.VIEWER)).secret
    mine = await register(client, name="agent-a")
    theirs = await register(client, name="agent-b")

    routes = _routes(app)
    operator_routes = [(m, p) for m, p in routes if p not in OPEN and not p.startswith(EAP)]
    agent_routes = [(m, p) for m, p in routes if p.startswith(EAP) and p != f"{EAP}/register"]
    assert len(operator_routes) > 40
    assert len(agent_routes) >= 5

    attempts = 0
    breaches: list[str] = []

    async def must_refuse(method: str, path: str, headers: dict[str, str], who: str) -> None:
        nonlocal attempts
        attempts += 1
        response = await client.request(method, path, headers=headers, json={})
        if response.status_code < 400 or response.status_code >= 500:
            breaches.append(f"{who}: {method} {path} -> {response.status_code}")
        elif response.status_code not in (401, 403, 404, 409, 422):
            breaches.append(f"{who}: {method} {path} -> unexpected {response.status_code}")

    for method, template in operator_routes:
        path = _concrete(template, str(uuid4()))
        await must_refuse(method, path, {}, "no credential")
        await must_refuse(method, path, mine.headers(), "an agent's token")
        await must_refuse(method, path, {"Authorization": "Bearer garbage"}, "garbage")
        if method not in READ_METHODS:
            response = await client.request(
                method, path, headers={"Authorization": f"Bearer {viewer}"}, json={}
            )
            attempts += 1
            if response.status_code != 403:
                breaches.append(f"viewer: {method} {path} -> {response.status_code}")
    for method, template in agent_routes:
        path = _concrete(template, theirs.id)
        await must_refuse(method, path, {}, "no credential")
        await must_refuse(
            method,
            path,
            {"Authorization": f"Bearer {operator}", "X-Agent-ID": theirs.id},
            "an operator's token",
        )
        # Agent A, with its own genuine token, naming B in the path (and in the header).
        await must_refuse(method, path, mine.headers(), "another agent (own id in header)")
        await must_refuse(
            method, path, mine.headers(agent_id=theirs.id), "another agent (B's id in header)"
        )
    print(
        f"\n[authorization matrix] {len(operator_routes)} operator routes, "
        f"{len(agent_routes)} agent routes, {attempts} refused-caller requests, "
        f"{len(breaches)} got through"
    )
    assert breaches == []
    # Both agents and the operator still work with their own credentials.
    assert (await theirs.beat())["agent_id"] == theirs.id
    own = await client.get("/api/v1/sessions", headers={"Authorization": f"Bearer {operator}"})
    assert own.status_code == 200
