"""Text a database cannot keep (a NUL, a lone surrogate) is refused at the edge with a
422 naming the field, on SQLite and PostgreSQL, for every stored field of every route:
nothing is written, and every list still answers. Each case also sends the same body
with clean text and sees it accepted, so a 422 here is the rule's and not the route's."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from industrial_orchestrator.api.schemas.common import StrictModel
from industrial_orchestrator.services.sessions import NewSession, SessionService

from .helpers import API, act, create

EXTERNAL = f"{API}/agents/external"
SECRET = "test-secret-key-that-is-long-enough-0123456789"
CHARS = {"nul": "\x00", "surrogate": "\ud800"}

pytestmark = pytest.mark.settings(secret_key=SECRET)


def _raw(body: Any) -> bytes:
    # json.dumps escapes the bad code points (\u0000, \ud800) as a client would send
    # them; httpx's own encoder cannot encode a lone surrogate at all.
    return json.dumps(body).encode()


async def _send(
    client: httpx.AsyncClient, method: str, url: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(
        method, url, content=_raw(body), headers={"Content-Type": "application/json", **headers}
    )


class World:
    """What the routes under test act on, made on first use so that each case pays only
    for what it needs."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._made: dict[str, Any] = {}

    async def get(self, name: str) -> Any:
        if name not in self._made:
            maker: Callable[[], Awaitable[Any]] = getattr(self, f"_make_{name}")
            self._made[name] = await maker()
        return self._made[name]

    async def _post(self, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        response = await self.client.post(url, json=body, headers=headers or {})
        assert response.status_code in (200, 201), response.text
        return response.json()

    async def _make_pending(self) -> str:
        return str((await create(self.client, title="pending"))["id"])

    async def _make_running(self) -> str:
        session = await create(self.client, title="running")
        await act(self.client, session["id"], "start")
        return str(session["id"])

    async def _make_checkpoint(self) -> str:
        running = await self.get("running")
        made = await self._post(f"{API}/sessions/{running}/checkpoints", {"label": "first"})
        return str(made["id"])

    async def _make_task(self) -> str:
        made = await self._post(f"{API}/tasks", {"title": "a task"})
        return str(made["id"])

    async def _make_context(self) -> str:
        made = await self._post(
            f"{API}/contexts", {"scope": "GLOBAL", "name": "plan", "critical": True}
        )
        return str(made["id"])

    async def _make_conflict(self) -> str:
        context = await self.get("context")
        url = f"{API}/contexts/{context}"
        first = await self.client.patch(
            url, json={"writer": "a", "data": {"k": 1}, "expected_version": 1}
        )
        assert first.status_code == 200, first.text
        late = await self.client.patch(
            url, json={"writer": "b", "data": {"k": 2}, "expected_version": 1}
        )
        assert late.status_code == 409, late.text
        return str(late.json()["details"]["conflict_id"])

    async def _make_agent(self) -> dict[str, str]:
        registered = await self._post(
            f"{EXTERNAL}/register",
            {
                "protocol_version": "1.0",
                "name": "EXT-1",
                "agent_type": "implementer",
                "capabilities": ["code_generation"],
            },
        )
        return {
            "id": registered["agent_id"],
            "Authorization": f"Bearer {registered['auth_token']}",
            "X-Agent-ID": registered["agent_id"],
        }

    async def _make_leased(self) -> str:
        running = await self.get("running")
        agent = await self.get("agent")
        made = await self._post(
            f"{API}/tasks",
            {
                "title": "leased",
                "session_id": running,
                "required_capabilities": ["code_generation"],
            },
        )
        moved = await self.client.patch(f"{API}/tasks/{made['id']}", json={"status": "READY"})
        assert moved.status_code == 200, moved.text
        pulled = await self.client.post(
            f"{EXTERNAL}/{agent['id']}/tasks/next", headers=self._agent_headers(agent)
        )
        assert pulled.status_code == 200, pulled.text
        return str(made["id"])

    @staticmethod
    def _agent_headers(agent: dict[str, str]) -> dict[str, str]:
        return {"Authorization": agent["Authorization"], "X-Agent-ID": agent["X-Agent-ID"]}

    async def url(self, template: str) -> str:
        names = {
            "pending",
            "running",
            "checkpoint",
            "task",
            "context",
            "conflict",
            "leased",
        }
        values: dict[str, str] = {}
        for name in names:
            if "{" + name + "}" in template:
                values[name] = await self.get(name)
        if "{agent}" in template:
            values["agent"] = (await self.get("agent"))["id"]
        return template.format(**values)

    async def headers(self, as_agent: bool) -> dict[str, str]:
        return self._agent_headers(await self.get("agent")) if as_agent else {}

    async def snapshot(self) -> dict[str, Any]:
        """Everything the API lists, each list answering 200."""
        urls = [
            f"{API}/sessions?page_size=100",
            f"{API}/tasks?page_size=100",
            f"{API}/agents",
            f"{API}/contexts",
            f"{API}/webhooks",
            f"{API}/events?limit=1000",
        ]
        if "running" in self._made:
            urls.append(f"{API}/sessions/{self._made['running']}/checkpoints")
        if "context" in self._made:
            urls.append(f"{API}/contexts/{self._made['context']}/conflicts")
        if "agent" in self._made:
            urls.append(f"{API}/agents/{self._made['agent']['id']}")
        seen: dict[str, Any] = {}
        for url in urls:
            response = await self.client.get(url)
            assert response.status_code == 200, (url, response.text)
            seen[url] = response.json()
        return seen


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: Callable[[str], Any]
    """The body with ``s`` where the bad text goes."""
    field: str
    """The field the 422 must name; ``{key}`` is the bad key as the answer spells it."""
    ok: int
    as_agent: bool = False


def _session(**fields: Any) -> dict[str, Any]:
    return {"title": "t", "initial_prompt": "p", **fields}


def _register(**fields: Any) -> dict[str, Any]:
    body = {
        "protocol_version": "1.0",
        "name": "EXT-2",
        "agent_type": "implementer",
        "capabilities": ["code_generation"],
    }
    return {**body, **fields}


def _result(**fields: Any) -> Callable[[str], Any]:
    # The task id is filled in by the test (it is only known once the task is leased).
    return lambda s: {"status": "completed", **{k: v(s) for k, v in fields.items()}}


CASES: dict[str, Case] = {
    "session title": Case(
        "POST", f"{API}/sessions", lambda s: _session(title=f"a{s}"), "title", 201
    ),
    "session prompt": Case(
        "POST", f"{API}/sessions", lambda s: _session(initial_prompt=f"p{s}"), "initial_prompt", 201
    ),
    "session metadata value": Case(
        "POST", f"{API}/sessions", lambda s: _session(metadata={"k": f"{s}x"}), "metadata.k", 201
    ),
    "session metadata key": Case(
        "POST", f"{API}/sessions", lambda s: _session(metadata={f"a{s}": 1}), "metadata.{key}", 201
    ),
    "session metadata deep": Case(
        "POST",
        f"{API}/sessions",
        lambda s: _session(metadata={"o": {"l": [1, {"d": s}]}}),
        "metadata.o.l.1.d",
        201,
    ),
    "session verify command": Case(
        "POST",
        f"{API}/sessions",
        lambda s: _session(verify_command=f"make{s}"),
        "verify_command",
        201,
    ),
    "cancel reason": Case(
        "POST", f"{API}/sessions/{{pending}}/cancel", lambda s: {"reason": s}, "reason", 200
    ),
    "fail reason": Case(
        "POST", f"{API}/sessions/{{running}}/fail", lambda s: {"reason": f"r{s}"}, "reason", 200
    ),
    "checkpoint label": Case(
        "POST", f"{API}/sessions/{{running}}/checkpoints", lambda s: {"label": s}, "label", 201
    ),
    "checkpoint reason": Case(
        "POST",
        f"{API}/sessions/{{running}}/checkpoints",
        lambda s: {"label": "l", "reason": s},
        "reason",
        201,
    ),
    "checkpoint data key": Case(
        "POST",
        f"{API}/sessions/{{running}}/checkpoints",
        lambda s: {"label": "l", "data": {"x": {f"{s}": 1}}},
        "data.x.{key}",
        201,
    ),
    "fork amendment": Case(
        "POST",
        f"{API}/sessions/{{running}}/fork",
        lambda s: {"checkpoint_id": "{checkpoint}", "amendment": f"a{s}"},
        "amendment",
        201,
    ),
    "fork title": Case(
        "POST",
        f"{API}/sessions/{{running}}/fork",
        lambda s: {"checkpoint_id": "{checkpoint}", "title": f"b{s}"},
        "title",
        201,
    ),
    "session log": Case(
        "POST",
        f"{API}/sessions/{{running}}/logs",
        lambda s: {"stream": "stdout", "text": f"out{s}\n"},
        "text",
        201,
    ),
    "task title": Case("POST", f"{API}/tasks", lambda s: {"title": f"t{s}"}, "title", 201),
    "task description": Case(
        "POST", f"{API}/tasks", lambda s: {"title": "t", "description": s}, "description", 201
    ),
    "task capability": Case(
        "POST",
        f"{API}/tasks",
        lambda s: {"title": "t", "required_capabilities": [f"c{s}"]},
        "required_capabilities.0",
        201,
    ),
    "task files": Case(
        "POST", f"{API}/tasks", lambda s: {"title": "t", "files": [f"f{s}"]}, "files.0", 201
    ),
    "task result summary": Case(
        "PATCH",
        f"{API}/tasks/{{task}}",
        lambda s: {"status": "READY", "result_summary": s},
        "result_summary",
        200,
    ),
    "context name": Case(
        "POST", f"{API}/contexts", lambda s: {"scope": "GLOBAL", "name": s}, "name", 201
    ),
    "context data key": Case(
        "POST",
        f"{API}/contexts",
        lambda s: {"scope": "GLOBAL", "name": "n", "data": {f"{s}k": "v"}},
        "data.{key}",
        201,
    ),
    "context write": Case(
        "PATCH",
        f"{API}/contexts/{{context}}",
        lambda s: {"writer": "w", "data": {"list": [f"{s}"]}},
        "data.list.0",
        200,
    ),
    "context writer": Case(
        "PATCH",
        f"{API}/contexts/{{context}}",
        lambda s: {"writer": f"w{s}", "data": {}},
        "writer",
        200,
    ),
    "conflict resolution": Case(
        "POST",
        f"{API}/contexts/{{context}}/conflicts/{{conflict}}/resolve",
        lambda s: {"choose": "custom", "data": {"k": s}},
        "data.k",
        200,
    ),
    "agent name": Case(
        "POST",
        f"{API}/agents",
        lambda s: {"name": f"n{s}", "agent_type": "t", "capabilities": ["c"]},
        "name",
        201,
    ),
    "agent type": Case(
        "POST",
        f"{API}/agents",
        lambda s: {"name": "n", "agent_type": f"t{s}", "capabilities": ["c"]},
        "agent_type",
        201,
    ),
    "agent capabilities": Case(
        "POST",
        f"{API}/agents",
        lambda s: {"name": "n", "agent_type": "t", "capabilities": ["c", s]},
        "capabilities.1",
        201,
    ),
    "agent metadata": Case(
        "POST",
        f"{API}/agents",
        lambda s: {"name": "n", "agent_type": "t", "capabilities": ["c"], "metadata": {"k": s}},
        "metadata.k",
        201,
    ),
    "eap name": Case(
        "POST", f"{EXTERNAL}/register", lambda s: _register(name=f"n{s}"), "name", 201
    ),
    "eap type": Case(
        "POST", f"{EXTERNAL}/register", lambda s: _register(agent_type=s), "agent_type", 201
    ),
    "eap capabilities": Case(
        "POST",
        f"{EXTERNAL}/register",
        lambda s: _register(capabilities=[f"c{s}"]),
        "capabilities.0",
        201,
    ),
    "eap version": Case(
        "POST", f"{EXTERNAL}/register", lambda s: _register(version=f"1{s}"), "version", 201
    ),
    "eap metadata key": Case(
        "POST",
        f"{EXTERNAL}/register",
        lambda s: _register(metadata={"m": {f"k{s}": 1}}),
        "metadata.m.{key}",
        201,
    ),
    "heartbeat metrics": Case(
        "POST",
        f"{EXTERNAL}/{{agent}}/heartbeat",
        lambda s: {"status": "healthy", "metrics": {"k": f"{s}x"}},
        "metrics.k",
        200,
        as_agent=True,
    ),
    "heartbeat metrics key": Case(
        "POST",
        f"{EXTERNAL}/{{agent}}/heartbeat",
        lambda s: {"status": "healthy", "metrics": {s: 1}},
        "metrics.{key}",
        200,
        as_agent=True,
    ),
    "result output": Case(
        "POST",
        f"{EXTERNAL}/{{agent}}/tasks/{{leased}}/result",
        _result(output_data=lambda s: {"summary": f"done{s}"}),
        "output_data.summary",
        200,
        as_agent=True,
    ),
    "result error": Case(
        "POST",
        f"{EXTERNAL}/{{agent}}/tasks/{{leased}}/result",
        _result(error=lambda s: f"e{s}"),
        "error",
        200,
        as_agent=True,
    ),
    "result artifact path": Case(
        "POST",
        f"{EXTERNAL}/{{agent}}/tasks/{{leased}}/result",
        _result(artifacts=lambda s: [{"path": f"a{s}.txt", "content": "x"}]),
        "artifacts.0.path",
        200,
        as_agent=True,
    ),
    "result artifact mime type": Case(
        "POST",
        f"{EXTERNAL}/{{agent}}/tasks/{{leased}}/result",
        _result(
            artifacts=lambda s: [{"path": "a.txt", "content": "x", "mime_type": f"text/plain{s}"}]
        ),
        "artifacts.0.mime_type",
        200,
        as_agent=True,
    ),
    "task log": Case(
        "POST",
        f"{EXTERNAL}/{{agent}}/tasks/{{leased}}/logs",
        lambda s: {"stream": "agent", "text": f"thinking{s}\n"},
        "text",
        201,
        as_agent=True,
    ),
    "webhook name": Case(
        "POST",
        f"{API}/webhooks",
        lambda s: {
            "name": f"h{s}",
            "url": "https://hooks.example.com/x",
            "events": ["session.finished"],
        },
        "name",
        201,
    ),
    "webhook url": Case(
        "POST",
        f"{API}/webhooks",
        lambda s: {
            "name": "h",
            "url": f"https://hooks.example.com/{s}",
            "events": ["session.finished"],
        },
        "url",
        201,
    ),
}


async def _body(world: World, case: Case, text: str) -> Any:
    body = case.body(text)
    if isinstance(body, dict) and body.get("checkpoint_id") == "{checkpoint}":
        body["checkpoint_id"] = await world.get("checkpoint")
    if "{leased}" in case.path and case.path.endswith("/result"):
        body["task_id"] = await world.get("leased")
    return body


@pytest.mark.parametrize("char", list(CHARS.values()), ids=list(CHARS))
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_unstorable_text_is_a_422_naming_the_field_and_nothing_is_stored(
    client: httpx.AsyncClient, case: Case, char: str
) -> None:
    world = World(client)
    url = await world.url(case.path)
    headers = await world.headers(case.as_agent)
    bad, good = await _body(world, case, char), await _body(world, case, "x")
    before = await world.snapshot()

    refused = await _send(client, case.method, url, bad, headers)

    assert refused.status_code == 422, refused.text
    answer = refused.json()
    assert answer["error"] == "validation_error"
    field = case.field.format(key=f"\\u{ord(char):04x}".join(_key_parts(case)))
    assert [(p["field"], p["location"], p["type"]) for p in answer["details"]] == [
        (field, "body", "unstorable_text")
    ]
    assert field in answer["message"]
    assert f"U+{ord(char):04X}" in answer["message"]
    assert await world.snapshot() == before

    clean = await _send(client, case.method, url, good, headers)
    assert clean.status_code == case.ok, clean.text


def _key_parts(case: Case) -> list[str]:
    """The bad key's text around the bad code point, found by building the body with a
    marker in its place."""
    marker = "\u2603"
    found = _keys_with(case.body(marker), marker)
    return found.split(marker) if found else ["", ""]


def _keys_with(value: Any, marker: str) -> str | None:
    if isinstance(value, dict):
        for key, child in value.items():
            if marker in key:
                return str(key)
            inner = _keys_with(child, marker)
            if inner is not None:
                return inner
    if isinstance(value, list):
        for child in value:
            inner = _keys_with(child, marker)
            if inner is not None:
                return inner
    return None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_stored_header_obeys_the_rule_too(client: httpx.AsyncClient) -> None:
    refused = await client.post(
        f"{API}/sessions", json=_session(), headers={"Idempotency-Key": "key\x00"}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["field"] == "Idempotency-Key"
    assert (await client.get(f"{API}/sessions")).json()["total"] == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_request_body_under_the_api_obeys_the_one_rule(app: FastAPI) -> None:
    """A body model that skipped ``StrictModel`` (or a bare dict body) would skip the
    rule: the published schema shows none does."""
    strict = {kind.__name__ for kind in _subclasses(StrictModel)}
    bodies: list[tuple[str, str]] = []
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith(API):
            continue
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                for ref in _refs(media["schema"]):
                    bodies.append((f"{method.upper()} {path}", ref))
    assert len(bodies) >= 25
    assert [(route, name) for route, name in bodies if name not in strict] == []


def _subclasses(kind: type[Any]) -> list[type[Any]]:
    children: list[type[Any]] = kind.__subclasses__()
    return [kind, *(sub for child in children for sub in _subclasses(child))]


def _refs(schema: dict[str, Any]) -> list[str]:
    """The component names a body schema is made of (``anyOf`` for an optional body);
    an inline schema counts as a name nobody has, so it fails."""
    if "$ref" in schema:
        return [str(schema["$ref"]).rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        return [ref for option in schema["anyOf"] for ref in _refs(option)]
    return [] if schema.get("type") == "null" else ["<inline schema>"]


async def test_json_written_past_the_edge_is_stored_as_it_can_be_served(
    client: httpx.AsyncClient, service: SessionService
) -> None:
    """The net under the edge: a writer inside the process (the engine, an executor)
    that missed cleaning its JSON still stores what every reader can serve."""
    await service.create(
        NewSession(title="t", initial_prompt="p", metadata={"k": "\ud800x", "n\x00": ["\x00"]})
    )
    listed = await client.get(f"{API}/sessions")
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["metadata"] == {"k": "\ufffdx", "n\ufffd": ["\ufffd"]}
