"""An agent's answer, and how each of its tool calls ended, reach the terminal even when
OpenCode's event stream carried none of it: OpenCode can be seen idle before the events
arrive, and the stream can drop. Here OpenCode (answering through httpx's mock transport)
opens the stream and ends it at once, so the turn's end is learnt by polling, as after a
drop."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from industrial_orchestrator.domain.agents.agent import AgentKind, new_agent
from industrial_orchestrator.domain.events import LogStream
from industrial_orchestrator.executors.opencode.client import OpenCodeClient
from industrial_orchestrator.executors.opencode.executor import OpenCodeExecutor
from industrial_orchestrator.executors.opencode.policy import OpenCodePolicy
from industrial_orchestrator.executors.opencode.server import OpenCodeServer

ANSWER = "1. Write the module\n2. Test the module"
TOOL = {
    "type": "tool",
    "id": "prt_t",
    "callID": "call_1",
    "sessionID": "ses_1",
    "tool": "read",
    "state": {"status": "completed", "input": {"filePath": "notes.md"}, "title": "notes.md"},
}


def _messages() -> list[dict[str, Any]]:
    return [
        {"info": {"id": "msg_1", "role": "user"}, "parts": [{"type": "text", "text": "plan"}]},
        {
            "info": {
                "id": "msg_2",
                "role": "assistant",
                "finish": "stop",
                "time": {"created": 1, "completed": 2},
                "tokens": {"input": 3, "output": 4},
                "cost": 0,
            },
            "parts": [TOOL, {"type": "text", "text": ANSWER}],
        },
    ]


def _opencode(events: list[dict[str, Any]]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/event":
            body = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
            return httpx.Response(
                200, content=body.encode(), headers={"content-type": "text/event-stream"}
            )
        answers: dict[str, Any] = {
            "/session": {"id": "ses_1"},
            "/session/ses_1/prompt_async": None,
            "/session/status": {},
            "/session/ses_1/message": _messages(),
        }
        if path not in answers:
            return httpx.Response(404, json={"name": "NotFound"})
        if answers[path] is None:
            return httpx.Response(204)
        return httpx.Response(200, json=answers[path])

    return httpx.MockTransport(answer)


class _Served(OpenCodeServer):
    def __init__(self, transport: httpx.MockTransport) -> None:
        super().__init__()
        self.client = OpenCodeClient("http://opencode.test", None, transport=transport)
        self.reason = None


async def _ask(events: list[dict[str, Any]]) -> tuple[str, list[tuple[LogStream, str]]]:
    server = _Served(_opencode(events))
    executor = OpenCodeExecutor(server, OpenCodePolicy(task_timeout_seconds=10, poll_seconds=0.05))
    shown: list[tuple[LogStream, str]] = []

    async def emit(stream: LogStream, text: str) -> None:
        shown.append((stream, text))

    try:
        answer, tokens, _ = await executor.ask(
            new_agent(
                id=uuid.uuid4(),
                name="architect",
                agent_type="architect",
                capabilities=["planning"],
                kind=AgentKind.INTERNAL,
                max_concurrent_tasks=1,
                now=datetime.now(UTC),
            ),
            "/tmp/tree",
            "plan",
            emit,
        )
    finally:
        await server.close()
    assert tokens == 7
    return answer, shown


async def test_an_answer_the_stream_never_carried_is_shown_from_the_messages() -> None:
    answer, shown = await _ask([{"type": "server.connected", "properties": {}}])
    assert answer == ANSWER
    assert shown == [
        (LogStream.TOOL, "read [completed] notes.md\n"),
        (LogStream.AGENT, ANSWER + "\n"),
    ]


async def test_a_tool_call_the_stream_showed_ending_is_not_shown_again() -> None:
    running = {**TOOL, "state": {**TOOL["state"], "status": "running"}}
    streamed = [
        {"type": "server.connected", "properties": {}},
        {"type": "message.part.updated", "properties": {"part": running}},
        {"type": "message.part.updated", "properties": {"part": TOOL}},
        {"type": "session.idle", "properties": {"sessionID": "ses_1"}},
    ]
    _, shown = await _ask(streamed)
    tools = [text for stream, text in shown if stream == LogStream.TOOL]
    assert tools == ["read [running] notes.md\n", "read [completed] notes.md\n"]


async def test_a_tool_call_the_stream_left_running_is_shown_ending() -> None:
    running = {**TOOL, "state": {**TOOL["state"], "status": "running"}}
    streamed = [
        {"type": "server.connected", "properties": {}},
        {"type": "message.part.updated", "properties": {"part": running}},
    ]
    _, shown = await _ask(streamed)
    tools = [text for stream, text in shown if stream == LogStream.TOOL]
    assert tools == ["read [running] notes.md\n", "read [completed] notes.md\n"]


async def test_an_answer_the_stream_carried_is_shown_once() -> None:
    streamed = [
        {"type": "server.connected", "properties": {}},
        {
            "type": "message.part.delta",
            "properties": {
                "sessionID": "ses_1",
                "partID": "prt_1",
                "field": "text",
                "delta": ANSWER,
            },
        },
        {"type": "session.idle", "properties": {"sessionID": "ses_1"}},
    ]
    answer, shown = await _ask(streamed)
    assert answer == ANSWER
    agent_lines = [text for stream, text in shown if stream == LogStream.AGENT]
    assert "".join(agent_lines) == ANSWER + "\n"
