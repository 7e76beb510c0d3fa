"""The scripted model on its own, then behind the real ``opencode serve``.

The second half pins what docs/opencode-notes.md says OpenCode 1.18.33 does: the tools it
offers and calls, the events of a turn, the tokens and cost it records, per-prompt
diffs, permission requests and replies, and how a provider's 4xx and 5xx end a turn.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from industrial_orchestrator.testing.model_replies import NO_DIRECTIVE_ANSWER, TITLE
from industrial_orchestrator.testing.model_script import (
    EditFile,
    Loop,
    RunCommand,
    WriteFile,
    parse_script,
)
from industrial_orchestrator.testing.scripted_model import LISTENING, ScriptedModel

from .conftest import EventStream, OpenCodeServer, session_event

T = TypeVar("T")
SYSTEM = {"role": "system", "content": "<env>\n  Working directory: /work/repo\n</env>"}
TURN_TIMEOUT = 90.0  # the first prompt in a directory loads OpenCode's plugins: seconds


# --- the scripted model alone -----------------------------------------------------------


@pytest.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    """A model of this test's own, served in the test's event loop."""
    async with ScriptedModel() as served:
        yield served


@pytest.mark.parametrize(
    ("text", "actions", "problems"),
    [
        ("no directive here", (), ()),
        ("@write a.py\n```python\nx = 1\n```", (WriteFile("a.py", "x = 1\n"),), ()),
        (
            "@edit b.py\n```new\nafter\n```\n```old\nbefore\n```",
            (EditFile("b.py", "before", "after"),),
            (),
        ),
        ("@edit b.py\n```\none\n```\n```\ntwo\n```", (EditFile("b.py", "one", "two"),), ()),
        ("  @bash ls -la  ", (RunCommand("ls -la"),), ()),
        # A directive quoted in a block that no directive claims is not obeyed.
        ("Example:\n```\n@bash rm -rf /\n```", (), ()),
        # A block may hold directive-like lines and longer fences.
        (
            "@write n.md\n````\n```\n@bash no\n```\n````",
            (WriteFile("n.md", "```\n@bash no\n```\n"),),
            (),
        ),
        (
            "@write a.py\n@bash ls",
            (RunCommand("ls"),),
            ("@write a.py: needs a path and a fenced block",),
        ),
    ],
)
def test_parse_script(text: str, actions: tuple[object, ...], problems: tuple[str, ...]) -> None:
    script = parse_script(text)
    assert script.actions == actions
    assert script.problems == problems


def test_parse_script_settings() -> None:
    script = parse_script("@fail 503 0.5\n@slow 2\n@tokens 100 7")
    assert (script.fail, script.retry_after, script.slow, script.tokens) == (
        503,
        0.5,
        2.0,
        (100, 7),
    )
    assert script.directives == ("@fail 503 0.5", "@slow 2", "@tokens 100 7")


async def _chat(
    model: ScriptedModel,
    messages: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=model.base_url, timeout=10) as http:
        body = {"model": "coder", "messages": messages, **extra}
        return await http.post("/chat/completions", json=body, headers=headers)


def _sse(response: httpx.Response) -> list[Any]:
    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


async def test_streamed_tool_call_follows_the_openai_delta_format(
    model: ScriptedModel,
) -> None:
    user = {"role": "user", "content": [{"type": "text", "text": "@write a.py\n```\nx\n```"}]}
    response = await _chat(
        model, [SYSTEM, user], stream=True, stream_options={"include_usage": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = _sse(response)
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["index"] == 0
    assert first["type"] == "function"
    assert first["function"]["name"] == "write"
    assert first["id"]
    arguments = "".join(
        chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for chunk in chunks
        if chunk["choices"] and "tool_calls" in chunk["choices"][0]["delta"]
    )
    assert json.loads(arguments) == {"filePath": "/work/repo/a.py", "content": "x\n"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert [call.usage for call in model.calls] == [usage]


async def test_one_tool_call_per_turn_then_a_summary(model: ScriptedModel) -> None:
    prompt = "@write a.py\n```\nx\n```\n@edit b.py\n```old\n1\n```\n```new\n2\n```\n@tokens 9 4"
    messages: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": prompt}]
    tools = []
    for _ in range(2):
        body = (await _chat(model, messages)).json()
        choice = body["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
        call = choice["message"]["tool_calls"][0]
        tools.append((call["function"]["name"], json.loads(call["function"]["arguments"])))
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "ok"},
        ]
    assert tools == [
        ("write", {"filePath": "/work/repo/a.py", "content": "x\n"}),
        ("edit", {"filePath": "/work/repo/b.py", "oldString": "1", "newString": "2"}),
    ]
    final = (await _chat(model, messages)).json()["choices"][0]
    assert final["finish_reason"] == "stop"
    assert final["message"]["content"] == "Done: wrote a.py, edited b.py."


async def _chat_with(
    model: ScriptedModel, model_id: str, messages: list[dict[str, Any]]
) -> dict[str, Any]:
    """A chat request for the model ``model_id`` of the scripted provider."""
    async with httpx.AsyncClient(base_url=model.base_url, timeout=10) as http:
        body = {"model": model_id, "messages": messages}
        response = await http.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_parse_loop() -> None:
    assert parse_script("@loop ls -la").loop == Loop("ls -la")
    assert parse_script("@loop model=looper echo x").loop == Loop("echo x", "looper")
    assert parse_script("@loop model=looper ").problems == ("@loop model=looper: needs a command",)


async def test_a_loop_repeats_its_command_after_the_other_actions_for_its_model_only(
    model: ScriptedModel,
) -> None:
    prompt = "@write a.py\n```\nx\n```\n@loop model=looper ls"
    messages: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": prompt}]
    calls = []
    for _ in range(4):
        body = await _chat_with(model, "looper", messages)
        call = body["choices"][0]["message"]["tool_calls"][0]
        calls.append((call["function"]["name"], json.loads(call["function"]["arguments"])))
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "ok"},
        ]
    written = ("write", {"filePath": "/work/repo/a.py", "content": "x\n"})
    assert calls == [written] + [("bash", {"command": "ls"})] * 3
    # Another model does the same script and then answers.
    other = (await _chat_with(model, "coder", messages[:4]))["choices"][0]
    assert other["finish_reason"] == "stop"
    assert other["message"]["content"] == "Done: wrote a.py."


async def test_title_requests_do_not_consume_directives(model: ScriptedModel) -> None:
    title_system = {"role": "system", "content": "You are a title generator. You output ONLY"}
    user = {"role": "user", "content": "@fail 400"}
    response = await _chat(model, [title_system, user])
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == TITLE
    assert model.calls[-1].kind == "title"
    assert model.chat_calls() == []


async def test_failures_plain_answers_and_slow_streams(model: ScriptedModel) -> None:
    failed = await _chat(model, [{"role": "user", "content": "@fail 503 0.25"}])
    assert failed.status_code == 503
    assert failed.headers["retry-after-ms"] == "250"
    assert failed.json()["error"]["message"] == "scripted failure (@fail 503)"

    session = {"x-session-id": "ses_one"}  # what OpenCode sends
    plain = await _chat(model, [{"role": "user", "content": "hi"}], headers=session)
    assert plain.json()["choices"][0]["message"]["content"] == NO_DIRECTIVE_ANSWER

    started = time.monotonic()
    slow = await _chat(model, [{"role": "user", "content": "@slow 0.4"}], stream=True)
    assert time.monotonic() - started >= 0.4
    assert _sse(slow)[-2]["choices"][0]["finish_reason"] == "stop"

    async with httpx.AsyncClient(base_url=model.base_url.removesuffix("/v1")) as http:
        recorded = (await http.get("/_scripted/calls")).json()
        of_session = (await http.get("/_scripted/calls", params={"session": "ses_one"})).json()
    assert [(call["status"], call["action"]) for call in recorded] == [
        (503, "fail"),
        (200, "text"),
        (200, "text"),
    ]
    assert [call["session"] for call in of_session] == ["ses_one"]
    assert model.chat_calls("ses_one") == [model.calls[1]]


def test_runs_in_a_thread_of_its_own() -> None:
    with ScriptedModel().in_thread() as model:
        models = httpx.get(f"{model.base_url}/models", timeout=5)
        assert models.status_code == 200
    assert [call.kind for call in model.calls] == ["models"]


def test_runs_as_a_process() -> None:
    command = [
        sys.executable,
        "-m",
        "industrial_orchestrator.testing.scripted_model",
        "--port",
        "0",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith(LISTENING)
            base_url = line.removeprefix(LISTENING).strip()
            models = httpx.get(f"{base_url}/models", timeout=5).json()
            assert models["data"][0]["id"] == "coder"
        finally:
            process.terminate()
            process.wait(timeout=10)


# --- behind the real opencode serve -----------------------------------------------------


async def _eventually(
    fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], within: float = 15
) -> T:
    """``fetch()`` until ``done`` holds: OpenCode writes some records just after idle."""
    deadline = time.monotonic() + within
    while True:
        value = await fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


class _Session:
    """One OpenCode session in ``directory``, driven over HTTP and watched on /event."""

    def __init__(self, http: httpx.AsyncClient, events: EventStream, directory: Path) -> None:
        self.http = http
        self.events = events
        self.params = {"directory": str(directory)}
        self.id = ""

    async def create(self, **body: Any) -> None:
        response = await self.http.post("/session", params=self.params, json=body)
        response.raise_for_status()
        self.id = response.json()["id"]

    async def prompt(self, text: str) -> None:
        body = {
            "parts": [{"type": "text", "text": text}],
            "model": {"providerID": "scripted", "modelID": "coder"},
        }
        response = await self.http.post(
            f"/session/{self.id}/prompt_async", params=self.params, json=body
        )
        assert response.status_code == 204, response.text

    async def turn(self, text: str) -> None:
        """Prompt and wait until the session has been busy and is idle again."""
        await self.prompt(text)
        await self.events.wait_for(self.is_busy, within=TURN_TIMEOUT)
        await self.events.wait_for(session_event(self.id, "session.idle"), within=TURN_TIMEOUT)

    def is_busy(self, event: dict[str, Any]) -> bool:
        return session_event(self.id, "session.status")(event) and (
            event["properties"]["status"]["type"] == "busy"
        )

    async def messages(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"/session/{self.id}/message", params=self.params)
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages

    async def settled_messages(self) -> list[dict[str, Any]]:
        """The messages once every assistant message is completed (idle can come first)."""
        return await _eventually(
            self.messages,
            lambda messages: all(
                "completed" in message["info"]["time"]
                for message in messages
                if message["info"]["role"] == "assistant"
            ),
        )

    async def diff(self, message_id: str) -> list[dict[str, Any]]:
        params = {**self.params, "messageID": message_id}
        response = await self.http.get(f"/session/{self.id}/diff", params=params)
        response.raise_for_status()
        diff: list[dict[str, Any]] = response.json()
        return diff


def _chat_statuses(model: ScriptedModel, session_id: str) -> list[int]:
    return [
        call.status for call in model.calls if call.kind == "chat" and call.session == session_id
    ]


def _assistants(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message["info"] for message in messages if message["info"]["role"] == "assistant"]


@pytest.mark.slow
async def test_write_then_edit_through_opencode(
    opencode_server: OpenCodeServer, scripted_model: ScriptedModel, git_repo: Path
) -> None:
    async with opencode_server.client() as http, EventStream(http, git_repo) as events:
        session = _Session(http, events, git_repo)
        await session.create()
        await session.turn('@write hello.py\n```python\nprint("hello")\n```')
        assert (git_repo / "hello.py").read_text() == 'print("hello")\n'
        await session.turn("@edit hello.py\n```old\nhello\n```\n```new\nworld\n```")
        assert (git_repo / "hello.py").read_text() == 'print("world")\n'

        messages = await session.settled_messages()
        tools = [
            (part["tool"], part["state"]["status"])
            for message in messages
            for part in message["parts"]
            if part["type"] == "tool"
        ]
        assert tools == [("write", "completed"), ("edit", "completed")]
        answered = scripted_model.chat_calls(session.id)
        assert {"write", "edit", "bash", "read"} <= set(answered[0].tools)

        # One assistant message per model call, each with the usage the model reported.
        reported = [call.usage for call in answered]
        recorded = [info["tokens"] for info in _assistants(messages)]
        assert [(t["input"], t["output"]) for t in recorded] == [
            (usage["prompt_tokens"], usage["completion_tokens"]) for usage in reported if usage
        ]
        cost = sum(info["cost"] for info in _assistants(messages))
        expected = sum(
            u["prompt_tokens"] * 1.0 + u["completion_tokens"] * 2.0 for u in reported if u
        )
        assert cost == pytest.approx(expected / 1_000_000, rel=1e-3)
        assert _assistants(messages)[-1]["finish"] == "stop"

        # The diff is kept per prompt (user message); without messageID 1.18.33 answers [].
        prompts = [
            message["info"]["id"] for message in messages if message["info"]["role"] == "user"
        ]
        diffs = [await _eventually(partial(session.diff, prompt), bool) for prompt in prompts]
        assert [[(d["file"], d["status"]) for d in diff] for diff in diffs] == [
            [("hello.py", "added")],
            [("hello.py", "modified")],
        ]
        assert '+print("world")' in diffs[1][0]["patch"]

        idle_status = await http.get("/session/status", params=session.params)
        assert session.id not in idle_status.json()


@pytest.mark.slow
async def test_client_error_ends_the_turn_with_api_error(
    opencode_server: OpenCodeServer, scripted_model: ScriptedModel, git_repo: Path
) -> None:
    async with opencode_server.client() as http, EventStream(http, git_repo) as events:
        session = _Session(http, events, git_repo)
        await session.create()
        await session.turn("@fail 400")
        error_events = events.of_session(session.id, "session.error")
        assert [event["properties"]["error"]["name"] for event in error_events] == ["APIError"]

        messages = await _eventually(
            session.messages, lambda messages: "error" in _assistants(messages)[-1]
        )
        error = _assistants(messages)[-1]["error"]
        assert error["name"] == "APIError"
        assert error["data"]["statusCode"] == 400
        assert error["data"]["isRetryable"] is False
        # A 4xx is not retried.
        assert _chat_statuses(scripted_model, session.id) == [400]


@pytest.mark.slow
async def test_server_errors_are_retried_five_times_then_fail(
    opencode_server: OpenCodeServer, scripted_model: ScriptedModel, git_repo: Path
) -> None:
    async with opencode_server.client() as http, EventStream(http, git_repo) as events:
        session = _Session(http, events, git_repo)
        await session.create()
        await session.turn("@fail 503 0.05")  # retry-after-ms: 50 instead of 2 s, 4 s, 8 s…
        retries = [
            event["properties"]["status"]
            for event in events.of_session(session.id, "session.status")
            if event["properties"]["status"]["type"] == "retry"
        ]
        assert [status["attempt"] for status in retries] == [1, 2, 3, 4, 5]
        assert retries[0]["message"] == "scripted failure (@fail 503)"
        assert isinstance(retries[0]["next"], int)  # epoch milliseconds of the next attempt
        error = events.of_session(session.id, "session.error")[0]["properties"]["error"]
        assert (error["name"], error["data"]["statusCode"]) == ("APIError", 503)
        assert _chat_statuses(scripted_model, session.id) == [503] * 6


@pytest.mark.slow
async def test_permission_is_asked_and_granted(
    opencode_server: OpenCodeServer, git_repo: Path
) -> None:
    async with opencode_server.client() as http, EventStream(http, git_repo) as events:
        session = _Session(http, events, git_repo)
        await session.create(permission=[{"permission": "bash", "pattern": "*", "action": "ask"}])
        await session.prompt("@bash echo hi > out.txt")
        asked = await events.wait_for(
            session_event(session.id, "permission.asked"), within=TURN_TIMEOUT
        )
        request = asked["properties"]
        assert request["permission"] == "bash"
        assert request["patterns"] == ["echo hi > out.txt"]
        assert request["metadata"] == {"command": "echo hi > out.txt"}
        assert request["tool"]["callID"].startswith("call_scripted_")
        pending = (await http.get("/permission", params=session.params)).json()
        assert [item["id"] for item in pending] == [request["id"]]

        reply = await http.post(
            f"/permission/{request['id']}/reply", params=session.params, json={"reply": "once"}
        )
        assert reply.json() is True
        await events.wait_for(session_event(session.id, "session.idle"), within=TURN_TIMEOUT)
        assert (git_repo / "out.txt").read_text() == "hi\n"
        replied = events.of_session(session.id, "permission.replied")
        assert [event["properties"]["reply"] for event in replied] == ["once"]
