"""Every size and rate limit of the orchestrator in one table, each probed on a real
``orchestrator serve`` at its edge: the largest thing allowed is taken, one unit more is
refused with the answer the docs promise (413, 422, 429 or a WebSocket close). A limit
added to the code and not to this table is a limit nobody has checked from outside.

Not here: the WebSocket clients' queues (WS_QUEUE_SIZE), which refuse nothing but bound
memory (a burst beyond one is read back from the log; tests/reliability/
test_live_streams.py floods a reader through a queue of one and loses nothing)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from industrial_orchestrator.api.app import MAX_BODY_BYTES, MAX_WEBSOCKET_FRAME_BYTES
from industrial_orchestrator.api.routers.sessions import MAX_PAGE_SIZE
from industrial_orchestrator.api.routers.streams import MAX_CONTROL_BYTES
from industrial_orchestrator.api.schemas.agents import MAX_METADATA_BYTES as AGENT_METADATA
from industrial_orchestrator.api.schemas.events import MAX_LOG_REQUEST_BYTES
from industrial_orchestrator.api.schemas.sessions import MAX_PROMPT_BYTES
from industrial_orchestrator.services.checkpoint_records import MAX_CHECKPOINT_DATA_BYTES
from tests.api.helpers import API
from tests.server_process import ServerProcess, run_cli

SECRET = "limits-secret-key-that-is-long-enough-0123456789"
ARTIFACT_BYTES = 64
ARTIFACTS = 3
RATE = 20
EVENTS_PAGE = 1000
EXTERNAL = f"{API}/agents/external"


@dataclass(frozen=True)
class Limit:
    name: str
    edge: str
    """The limit, as the docs state it."""
    probe: Callable[[Any, Any], tuple[int, int]]
    """(answer at the edge, answer one past it)."""
    refusal: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("limits")
    env = {
        "ORCHESTRATOR_HOME": str(home / "home"),
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": SECRET,
        "ARTIFACT_MAX_BYTES": str(ARTIFACT_BYTES),
        "ARTIFACT_MAX_COUNT": str(ARTIFACTS),
        "RATE_LIMIT_PER_MINUTE": str(RATE),
        "AUTH_REQUIRED": "true",
    }
    with ServerProcess(env, home / "server") as server:
        server.start()
        yield server


@dataclass
class World:
    """What the probes act on: an operator's token, a session, a leased task."""

    http: httpx.Client
    operator: dict[str, str]
    rate_limited: dict[str, str]
    session_id: str
    agent_id: str
    agent: dict[str, str]
    task_id: str
    ws_url: str


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[World]:
    def token(name: str) -> dict[str, str]:
        made = run_cli("token", "create", "--name", name, env=server.env, cwd=server.workdir)
        assert made.returncode == 0, made.stderr
        return {"Authorization": f"Bearer {made.stdout.strip()}"}

    operator, rate_limited = token("limits"), token("rate")
    with server.client() as http:
        session = http.post(
            f"{API}/sessions", json={"title": "t", "initial_prompt": "p"}, headers=operator
        )
        assert session.status_code == 201, session.text
        registered = http.post(
            f"{EXTERNAL}/register",
            json={
                "protocol_version": "1.0",
                "name": "limits-agent",
                "version": "1",
                "agent_type": "implementer",
                "capabilities": ["python"],
            },
        )
        assert registered.status_code == 201, registered.text
        agent_id = registered.json()["agent_id"]
        agent = {
            "Authorization": f"Bearer {registered.json()['auth_token']}",
            "X-Agent-ID": agent_id,
        }
        task = http.post(
            f"{API}/tasks",
            json={
                "title": "t",
                "task_type": "code_generation",
                "required_capabilities": ["python"],
            },
            headers=operator,
        )
        assert task.status_code == 201, task.text
        http.patch(f"{API}/tasks/{task.json()['id']}", json={"status": "READY"}, headers=operator)
        leased = http.post(f"{EXTERNAL}/{agent_id}/tasks/next", headers=agent)
        assert leased.status_code == 200, leased.text
        yield World(
            http,
            operator,
            rate_limited,
            session.json()["id"],
            agent_id,
            agent,
            task.json()["id"],
            f"ws://127.0.0.1:{server.port}/ws/sessions/{session.json()['id']}",
        )


def _status(response: httpx.Response) -> int:
    return response.status_code


def body_size(world: World, _: Any) -> tuple[int, int]:
    def post(size: int) -> int:
        # A prompt of padding: the body itself is what is measured here, not the prompt.
        head = b'{"title": "t", "initial_prompt": "p"}'
        raw = head + b" " * (size - len(head))
        assert len(raw) == size
        return _status(
            world.http.post(
                f"{API}/sessions",
                content=raw,
                headers={**world.operator, "Content-Type": "application/json"},
            )
        )

    return post(MAX_BODY_BYTES), post(MAX_BODY_BYTES + 1)


def chunked_body_size(world: World, _: Any) -> tuple[int, int]:
    """The same cap on a body sent without Content-Length, counted while it streams in."""

    def post(size: int) -> int:
        head = b'{"title": "t", "initial_prompt": "p"}'
        raw = head + b" " * (size - len(head))

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(raw), 64 * 1024):
                yield raw[start : start + 64 * 1024]

        response = world.http.post(
            f"{API}/sessions",
            content=chunks(),
            headers={**world.operator, "Content-Type": "application/json"},
        )
        assert response.request.headers.get("transfer-encoding") == "chunked"
        return _status(response)

    return post(MAX_BODY_BYTES), post(MAX_BODY_BYTES + 1)


def prompt_size(world: World, _: Any) -> tuple[int, int]:
    def post(size: int) -> int:
        body = {"title": "t", "initial_prompt": "p" * size}
        return _status(world.http.post(f"{API}/sessions", json=body, headers=world.operator))

    return post(MAX_PROMPT_BYTES), post(MAX_PROMPT_BYTES + 1)


def page_size(world: World, _: Any) -> tuple[int, int]:
    def get(size: int) -> int:
        answers = {
            _status(
                world.http.get(
                    f"{API}/{listing}", params={"page_size": size}, headers=world.operator
                )
            )
            for listing in ("sessions", "tasks", "agents")
        }
        assert len(answers) == 1, answers  # the listings share the limit
        return answers.pop()

    return get(MAX_PAGE_SIZE), get(MAX_PAGE_SIZE + 1)


def events_page(world: World, _: Any) -> tuple[int, int]:
    def get(size: int) -> int:
        return _status(
            world.http.get(f"{API}/events", params={"limit": size}, headers=world.operator)
        )

    return get(EVENTS_PAGE), get(EVENTS_PAGE + 1)


def log_chunk(world: World, _: Any) -> tuple[int, int]:
    def post(text: str) -> int:
        body = {"stream": "stdout", "text": text}
        return _status(
            world.http.post(
                f"{API}/sessions/{world.session_id}/logs", json=body, headers=world.operator
            )
        )

    # The cap is on the text's UTF-8 bytes: one two-byte letter takes it past.
    return post("x" * MAX_LOG_REQUEST_BYTES), post("x" * (MAX_LOG_REQUEST_BYTES - 1) + "é")


def checkpoint_data(world: World, _: Any) -> tuple[int, int]:
    def post(size: int) -> int:
        # {"blob":"..."} serialised compactly is 11 bytes around the text.
        body = {"label": "l", "data": {"blob": "x" * (size - 11)}}
        return _status(
            world.http.post(
                f"{API}/sessions/{world.session_id}/checkpoints", json=body, headers=world.operator
            )
        )

    return post(MAX_CHECKPOINT_DATA_BYTES), post(MAX_CHECKPOINT_DATA_BYTES + 1)


def agent_metadata(world: World, _: Any) -> tuple[int, int]:
    def register(size: int) -> int:
        # {"k":"..."} serialised compactly is 8 bytes around the text.
        body = {
            "name": f"meta-{size}",
            "agent_type": "implementer",
            "capabilities": ["python"],
            "metadata": {"k": "x" * (size - 8)},
        }
        return _status(world.http.post(f"{API}/agents", json=body, headers=world.operator))

    return register(AGENT_METADATA), register(AGENT_METADATA + 1)


def _report(world: World, artifacts: list[dict[str, str]]) -> int:
    body = {"task_id": world.task_id, "status": "completed", "artifacts": artifacts}
    return _status(
        world.http.post(
            f"{EXTERNAL}/{world.agent_id}/tasks/{world.task_id}/result",
            json=body,
            headers=world.agent,
        )
    )


def artifact_count(world: World, _: Any) -> tuple[int, int]:
    over = _report(world, [{"path": f"{n}.txt", "content": "x"} for n in range(ARTIFACTS + 1)])
    return 0, over  # the edge is taken by artifact_size's accepted report


def artifact_size(world: World, _: Any) -> tuple[int, int]:
    over = _report(world, [{"path": "a.txt", "content": "x" * (ARTIFACT_BYTES + 1)}])
    at_edge = _report(
        world,
        [{"path": f"{n}.txt", "content": "x" * ARTIFACT_BYTES} for n in range(ARTIFACTS)],
    )
    return at_edge, over


def rate(world: World, _: Any) -> tuple[int, int]:
    statuses = [
        _status(
            world.http.post(
                f"{API}/sessions",
                json={"title": "r", "initial_prompt": "p"},
                headers=world.rate_limited,
            )
        )
        for _ in range(RATE + 1)
    ]
    assert set(statuses[:-1]) == {201}, statuses
    return statuses[-2], statuses[-1]


def control_message(world: World, server: ServerProcess) -> tuple[int, int]:
    def send(size: int) -> int:
        cookie = world.operator["Authorization"]
        with connect(
            world.ws_url,
            additional_headers={"Authorization": cookie},
            open_timeout=10,
            max_size=None,
        ) as ws:
            head = json.dumps({"type": "ping", "pad": ""})
            message = json.dumps({"type": "ping", "pad": "x" * (size - len(head))})
            assert len(message) == size
            ws.send(message)
            try:
                while True:
                    message = json.loads(ws.recv(timeout=10))
                    if message.get("type") == "pong":
                        return 200
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else -1

    return send(MAX_CONTROL_BYTES), send(MAX_CONTROL_BYTES + 1)


def websocket_frame(world: World, server: ServerProcess) -> tuple[int, int]:
    """Past the control-message cap, the server's frame limit: a huge frame is refused by
    the protocol layer before it is read into memory."""
    with connect(
        world.ws_url,
        additional_headers={"Authorization": world.operator["Authorization"]},
        open_timeout=10,
    ) as ws:
        ws.send("x" * (MAX_WEBSOCKET_FRAME_BYTES + 1))
        try:
            while True:
                ws.recv(timeout=10)
        except ConnectionClosed as closed:
            return 0, closed.rcvd.code if closed.rcvd else -1


LIMITS = [
    Limit("request body", f"{MAX_BODY_BYTES} bytes", body_size, 413),
    Limit("request body, chunked", f"{MAX_BODY_BYTES} bytes", chunked_body_size, 413),
    Limit("session prompt", f"{MAX_PROMPT_BYTES} bytes", prompt_size, 422),
    Limit("page size (sessions, tasks, agents)", str(MAX_PAGE_SIZE), page_size, 422),
    Limit("page size (events)", str(EVENTS_PAGE), events_page, 422),
    Limit("log text", f"{MAX_LOG_REQUEST_BYTES} bytes", log_chunk, 413),
    Limit("checkpoint data", f"{MAX_CHECKPOINT_DATA_BYTES} bytes", checkpoint_data, 413),
    Limit("agent metadata", f"{AGENT_METADATA} bytes", agent_metadata, 422),
    Limit("artifacts per result", f"ARTIFACT_MAX_COUNT={ARTIFACTS}", artifact_count, 413),
    Limit("artifact size", f"ARTIFACT_MAX_BYTES={ARTIFACT_BYTES}", artifact_size, 413),
    Limit("changes per token", f"RATE_LIMIT_PER_MINUTE={RATE}", rate, 429),
    Limit("WebSocket control message", f"{MAX_CONTROL_BYTES} bytes", control_message, 1009),
    Limit("WebSocket frame", f"{MAX_WEBSOCKET_FRAME_BYTES} bytes", websocket_frame, 1009),
]


def test_every_limit_takes_its_edge_and_refuses_one_more(
    world: World, server: ServerProcess
) -> None:
    seen = []
    for limit in LIMITS:
        at_edge, over = limit.probe(world, server)
        seen.append((limit, at_edge, over))
    for limit, at_edge, over in seen:
        print(
            f"\n[limit: {limit.name}] {limit.edge}: at the edge {at_edge or '-'}, one more {over}"
        )
    for limit, at_edge, over in seen:
        assert over == limit.refusal, f"{limit.name}: one past {limit.edge} answered {over}"
        assert at_edge in (0, 200, 201), f"{limit.name}: {limit.edge} answered {at_edge}"
