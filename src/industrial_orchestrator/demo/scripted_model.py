"""A scripted OpenAI-compatible model server, driven by directives in the prompt.

OpenCode talks to it as to any ``@ai-sdk/openai-compatible`` provider (see
``opencode_config``); what the "model" does is written in the user's prompt, one
directive a line::

    @write src/hello.py          create a file with the next fenced block
    ```python
    print("hello")
    ```
    @edit src/hello.py           replace the ``old`` fenced block by the ``new`` one
    ```old
    hello
    ```
    ```new
    world
    ```
    @bash ls -la                 run a shell command (OpenCode's ``bash`` tool)
    @fail 400                    answer every request with this HTTP status
    @fail 503 0.2                …and ask for a retry after 0.2 s (``retry-after-ms``)
    @slow 2.5                    spread the answer's chunks over this many seconds
    @tokens 1200 80              report exactly this usage (prompt, completion)
    @loop ls                     once the other directives are done, run this shell
                                 command again and again, never answering (an agent
                                 stuck in a loop, for the loop guard)
    @loop model=looper ls        …only when the request is for the model ``looper``
                                 (``opencode_config(models=...)``); other models ignore it
    @plan                        asked for a plan as the architect (``domain.agent_plans``),
    ~~~json                      answer with the next fenced block, verbatim; ignored in
    {"tasks": [...]}             any other request
    ~~~

The file and shell directives become tool calls, one per model turn and in order; once
every tool result is back the model answers ``Done: wrote …, edited …``. Which
directives are done is read from the tool results in the conversation, so each request
is answered from its messages alone. OpenCode's own title requests get a short title
and leave the directives alone.

Every request is recorded (``ScriptedModel.calls``, also ``GET /_scripted/calls``) with
the usage reported, so tests can compare it with what the orchestrator recorded.

Run it in-process (``async with ScriptedModel() as model: model.base_url``) or as a
process: ``python -m industrial_orchestrator.demo.scripted_model --port 0`` prints
``scripted model listening on http://127.0.0.1:PORT/v1`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..domain.agent_plans import PLAN_REQUEST_OPENING

PROVIDER_ID = "scripted"
MODEL_ID = "coder"
HOST = "127.0.0.1"
LISTENING = "scripted model listening on"

# OpenCode's tools and the argument names of the 1.18 series (docs/opencode-notes.md).
WRITE_TOOL = "write"
EDIT_TOOL = "edit"
BASH_TOOL = "bash"

NO_DIRECTIVE_ANSWER = "Scripted model: no directives, nothing to do."
TITLE = "Scripted session"

_DIRECTIVE = re.compile(r"^[ \t]*@(write|edit|bash|fail|slow|tokens|plan|loop)\b[ \t]*(.*?)\s*$")
_LOOP_MODEL = re.compile(r"^model=(\S+)(?:\s+(.*))?$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")
_WORKING_DIRECTORY = re.compile(r"Working directory:[ \t]*(\S[^\n]*?)[ \t]*$", re.MULTILINE)
_TITLE_REQUEST = re.compile(r"title generator", re.IGNORECASE)


# --- the script -------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: str

    def describe(self) -> str:
        return f"wrote {self.path}"


@dataclass(frozen=True)
class EditFile:
    path: str
    old: str
    new: str

    def describe(self) -> str:
        return f"edited {self.path}"


@dataclass(frozen=True)
class RunCommand:
    command: str

    def describe(self) -> str:
        return f"ran `{self.command}`"


Action = WriteFile | EditFile | RunCommand


@dataclass(frozen=True)
class Loop:
    """Run ``command`` forever once the other actions are done (for ``model`` only, if set)."""

    command: str
    model: str | None = None

    def applies_to(self, model: str) -> bool:
        return self.model is None or self.model == model


@dataclass(frozen=True)
class Script:
    """What one user message asks the model to do."""

    directives: tuple[str, ...] = ()  # one summary line per directive, e.g. "@write a.py"
    actions: tuple[Action, ...] = ()
    fail: int | None = None
    retry_after: float | None = None  # seconds, sent as ``retry-after-ms`` with the failure
    slow: float = 0.0
    tokens: tuple[int, int] | None = None
    plan: str | None = None  # the architect's answer, given only when asked for a plan
    loop: Loop | None = None
    problems: tuple[str, ...] = ()  # directives that could not be read

    @property
    def empty(self) -> bool:
        return not self.directives


@dataclass
class _Block:
    label: str
    text: str


def _fence_at(lines: Sequence[str], index: int) -> tuple[str, str] | None:
    match = _FENCE.match(lines[index])
    return (match.group(1), match.group(2)) if match else None


def _read_block(lines: Sequence[str], index: int) -> tuple[_Block, int]:
    """The fenced block opening at ``lines[index]``, and the index after its closing fence."""
    opening = _fence_at(lines, index)
    assert opening is not None
    fence, label = opening
    body: list[str] = []
    index += 1
    while index < len(lines):
        stripped = lines[index].strip()
        if stripped.startswith(fence) and set(stripped) == {fence[0]}:
            return _Block(label, "".join(line + "\n" for line in body)), index + 1
        body.append(lines[index])
        index += 1
    return _Block(label, "".join(line + "\n" for line in body)), index  # unclosed: to the end


def _blocks_after(lines: Sequence[str], index: int, count: int) -> tuple[list[_Block], int]:
    """Up to ``count`` fenced blocks following a directive line (stopping at the next one)."""
    blocks: list[_Block] = []
    while index < len(lines) and len(blocks) < count:
        if _DIRECTIVE.match(lines[index]):
            break
        if _fence_at(lines, index):
            block, index = _read_block(lines, index)
            blocks.append(block)
        else:
            index += 1
    return blocks, index


def parse_script(text: str) -> Script:
    """The directives of one message, in order. Fenced blocks not claimed by a directive
    are skipped, so a directive quoted inside one is not obeyed."""
    lines = text.splitlines()
    directives: list[str] = []
    actions: list[Action] = []
    problems: list[str] = []
    fail: int | None = None
    retry_after: float | None = None
    slow = 0.0
    tokens: tuple[int, int] | None = None
    plan: str | None = None
    loop: Loop | None = None
    index = 0
    while index < len(lines):
        if _fence_at(lines, index):
            _, index = _read_block(lines, index)
            continue
        match = _DIRECTIVE.match(lines[index])
        index += 1
        if match is None:
            continue
        verb, argument = match.group(1), match.group(2)
        directives.append(f"@{verb} {argument}".rstrip())
        try:
            if verb == "write":
                blocks, index = _blocks_after(lines, index, 1)
                if not argument or not blocks:
                    raise ValueError("needs a path and a fenced block")
                actions.append(WriteFile(argument, blocks[0].text))
            elif verb == "edit":
                blocks, index = _blocks_after(lines, index, 2)
                if not argument or len(blocks) < 2:
                    raise ValueError("needs a path and two fenced blocks (old, new)")
                labelled = {block.label: block.text for block in blocks}
                old = labelled.get("old", blocks[0].text)
                new = labelled.get("new", blocks[1].text)
                actions.append(EditFile(argument, old.removesuffix("\n"), new.removesuffix("\n")))
            elif verb == "bash":
                if not argument:
                    raise ValueError("needs a command")
                actions.append(RunCommand(argument))
            elif verb == "fail":
                status, *delay = argument.split()
                fail = int(status)
                if not 400 <= fail <= 599:
                    raise ValueError("status must be 400-599")
                retry_after = float(delay[0]) if delay else None
            elif verb == "plan":
                blocks, index = _blocks_after(lines, index, 1)
                if not blocks:
                    raise ValueError("needs a fenced block (the plan)")
                plan = blocks[0].text
            elif verb == "loop":
                targeted = _LOOP_MODEL.match(argument)
                command = (targeted.group(2) or "") if targeted else argument
                if not command.strip():
                    raise ValueError("needs a command")
                loop = Loop(command.strip(), targeted.group(1) if targeted else None)
            elif verb == "slow":
                slow = float(argument)
                if slow < 0:
                    raise ValueError("seconds must be >= 0")
            else:  # tokens
                prompt, completion = (int(part) for part in argument.split())
                tokens = (prompt, completion)
        except ValueError as exc:
            problems.append(f"@{verb} {argument}: {exc}".strip())
    return Script(
        directives=tuple(directives),
        actions=tuple(actions),
        fail=fail,
        retry_after=retry_after,
        slow=slow,
        tokens=tokens,
        plan=plan,
        loop=loop,
        problems=tuple(problems),
    )


# --- reading the conversation -----------------------------------------------------------


def _text_of(content: Any) -> str:
    """The text of a message's ``content``: a string or a list of ``{type, text}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [message for message in messages if isinstance(message, Mapping)]


def _system_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(
        _text_of(message.get("content"))
        for message in messages
        if message.get("role") in ("system", "developer")
    )


def is_title_request(body: Mapping[str, Any]) -> bool:
    """OpenCode asks the small model for a session title with a system prompt of its own."""
    return bool(_TITLE_REQUEST.search(_system_text(_messages(body))))


def working_directory(body: Mapping[str, Any]) -> str | None:
    """The directory OpenCode tells the model it works in (its system prompt's ``<env>``)."""
    match = _WORKING_DIRECTORY.search(_system_text(_messages(body)))
    return match.group(1) if match else None


def _script_in(messages: Sequence[Mapping[str, Any]]) -> tuple[Script, int]:
    """The script of the last user message that has directives, and that message's index."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") != "user":
            continue
        script = parse_script(_text_of(messages[index].get("content")))
        if not script.empty:
            return script, index
    return Script(), -1


def _absolute(path: str, directory: str | None) -> str:
    if path.startswith("/") or directory is None:
        return path
    return f"{directory.rstrip('/')}/{path}"


def tool_call_for(action: Action, directory: str | None) -> tuple[str, dict[str, Any]]:
    """The OpenCode tool and arguments that carry out ``action``."""
    if isinstance(action, WriteFile):
        path = _absolute(action.path, directory)
        return WRITE_TOOL, {"filePath": path, "content": action.content}
    if isinstance(action, EditFile):
        return EDIT_TOOL, {
            "filePath": _absolute(action.path, directory),
            "oldString": action.old,
            "newString": action.new,
        }
    return BASH_TOOL, {"command": action.command}


@dataclass(frozen=True)
class Reply:
    """What the model answers to one request."""

    kind: Literal["text", "tool", "fail"]
    text: str = ""
    tool: str = ""
    arguments: str = ""  # the tool call's arguments, as JSON text
    call_id: str = ""
    status: int = 200
    retry_after: float | None = None
    slow: float = 0.0
    tokens: tuple[int, int] | None = None
    directives: tuple[str, ...] = ()
    title: bool = False

    @property
    def action(self) -> str:
        return f"tool:{self.tool}" if self.kind == "tool" else self.kind

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.kind == "tool" else "stop"

    @property
    def completion_text(self) -> str:
        return self.tool + self.arguments if self.kind == "tool" else self.text


def plan_reply(body: Mapping[str, Any]) -> Reply:
    """Decide the answer to a chat request from its messages alone."""
    if is_title_request(body):
        return Reply(kind="text", text=TITLE, title=True)
    messages = _messages(body)
    script, at = _script_in(messages)
    if script.empty:
        return Reply(kind="text", text=NO_DIRECTIVE_ANSWER)
    base = Reply(kind="text", slow=script.slow, tokens=script.tokens, directives=script.directives)
    if script.fail is not None:
        return replace(base, kind="fail", status=script.fail, retry_after=script.retry_after)
    if script.problems:
        return replace(base, text="Scripted model: cannot read " + "; ".join(script.problems))
    if script.plan is not None and PLAN_REQUEST_OPENING in _text_of(messages[at].get("content")):
        return replace(base, text=script.plan)  # asked as the architect: the plan, verbatim
    done = sum(1 for message in messages[at + 1 :] if message.get("role") == "tool")
    action: Action | None = None
    if done < len(script.actions):
        action = script.actions[done]
    elif script.loop is not None and script.loop.applies_to(str(body.get("model") or "")):
        action = RunCommand(script.loop.command)
    if action is not None:
        tool, arguments = tool_call_for(action, working_directory(body))
        return replace(
            base,
            kind="tool",
            tool=tool,
            arguments=json.dumps(arguments),
            call_id=f"call_scripted_{at}_{done}",
        )
    summary = ", ".join(action.describe() for action in script.actions)
    return replace(base, text=f"Done: {summary}." if summary else "Done.")


def usage_for(body: Mapping[str, Any], reply: Reply) -> dict[str, int]:
    """``@tokens`` when given, else a deterministic count: characters // 4, at least 1."""
    if reply.tokens is not None:
        prompt, completion = reply.tokens
    else:
        prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
        completion = max(1, len(reply.completion_text) // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# --- the HTTP side ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedCall:
    """One request the server answered."""

    path: str
    status: int
    kind: str = "chat"  # "chat" | "title" | "models"
    session: str = ""  # OpenCode's session ID (its ``x-session-id`` header), if sent
    stream: bool = False
    action: str = ""  # "text" | "tool:<name>" | "fail"
    directives: tuple[str, ...] = ()
    usage: dict[str, int] | None = None
    tools: tuple[str, ...] = ()  # the tool names the request offered
    request: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # body

    def as_json(self) -> dict[str, Any]:
        """The record without the request body (``GET /_scripted/calls``)."""
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        del data["request"]
        data["directives"] = list(self.directives)
        data["tools"] = list(self.tools)
        return data


def _tool_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return ()
    names = (tool.get("function", {}).get("name") for tool in tools if isinstance(tool, Mapping))
    return tuple(str(name) for name in names if name)


def _pieces(text: str, count: int = 4) -> list[str]:
    """``text`` cut into about ``count`` pieces (streamed as separate deltas)."""
    if not text:
        return []
    size = max(1, -(-len(text) // count))
    return [text[start : start + size] for start in range(0, len(text), size)]


class _Completion:
    """The chunks (or the single JSON body) of one chat completion."""

    def __init__(self, body: Mapping[str, Any], reply: Reply, usage: dict[str, int]) -> None:
        self.reply = reply
        self.usage = usage
        self.model = str(body.get("model") or MODEL_ID)
        self.id = f"chatcmpl-scripted-{time.monotonic_ns()}"
        self.created = int(time.time())

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def chunks(self) -> list[dict[str, Any]]:
        reply = self.reply
        if reply.kind == "tool":
            call = {
                "index": 0,
                "id": reply.call_id,
                "type": "function",
                "function": {"name": reply.tool, "arguments": ""},
            }
            chunks = [self._chunk({"role": "assistant", "content": None, "tool_calls": [call]})]
            chunks += [
                self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                for piece in _pieces(reply.arguments)
            ]
        else:
            chunks = [self._chunk({"role": "assistant", "content": ""})]
            chunks += [self._chunk({"content": piece}) for piece in _pieces(reply.text)]
        chunks.append(self._chunk({}, reply.finish_reason))
        usage_chunk = self._chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = self.usage
        chunks.append(usage_chunk)
        return chunks

    def message(self) -> dict[str, Any]:
        reply = self.reply
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.kind == "tool":
            message["tool_calls"] = [
                {
                    "id": reply.call_id,
                    "type": "function",
                    "function": {"name": reply.tool, "arguments": reply.arguments},
                }
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": self.usage,
        }

    async def stream(self) -> AsyncIterator[bytes]:
        chunks = self.chunks()
        pause = self.reply.slow / len(chunks)
        for chunk in chunks:
            if pause:
                await asyncio.sleep(pause)
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": "scripted"}}
    return JSONResponse(body, status_code=status)


def create_app(calls: list[ScriptedCall]) -> Starlette:
    """The ASGI app; every answered request is appended to ``calls``."""

    async def models(request: Request) -> Response:
        calls.append(ScriptedCall(path=request.url.path, status=200, kind="models"))
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": PROVIDER_ID}
        return JSONResponse({"object": "list", "data": [model]})

    async def chat_completions(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            calls.append(ScriptedCall(path=request.url.path, status=400))
            return _error(400, "the body must be a JSON object")
        reply = plan_reply(body)
        stream = bool(body.get("stream"))
        usage = None if reply.kind == "fail" else usage_for(body, reply)
        calls.append(
            ScriptedCall(
                path=request.url.path,
                status=reply.status,
                kind="title" if reply.title else "chat",
                session=request.headers.get("x-session-id", ""),
                stream=stream,
                action=reply.action,
                directives=reply.directives,
                usage=usage,
                tools=_tool_names(body),
                request=body,
            )
        )
        if usage is None:
            kind = "server_error" if reply.status >= 500 else "invalid_request_error"
            response = _error(reply.status, f"scripted failure (@fail {reply.status})", kind)
            if reply.retry_after is not None:
                # OpenCode waits this long before retrying (else 2 s, doubling, up to 30 s).
                response.headers["retry-after-ms"] = str(round(reply.retry_after * 1000))
            return response
        completion = _Completion(body, reply, usage)
        if not stream:
            if reply.slow:
                await asyncio.sleep(reply.slow)
            return JSONResponse(completion.message())
        headers = {"Cache-Control": "no-cache"}
        return StreamingResponse(
            completion.stream(), media_type="text/event-stream", headers=headers
        )

    async def recorded(request: Request) -> Response:
        if request.method == "DELETE":
            calls.clear()
            return Response(status_code=204)
        session = request.query_params.get("session")
        selected = [call for call in calls if session is None or call.session == session]
        return JSONResponse([call.as_json() for call in selected])

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/_scripted/calls", recorded, methods=["GET", "DELETE"]),
        ]
    )


def opencode_config(
    base_url: str,
    *,
    permission: Mapping[str, Any] | str | None = None,
    models: Sequence[str] = (MODEL_ID,),
) -> dict[str, Any]:
    """An OpenCode config (for ``OPENCODE_CONFIG_CONTENT``) whose only provider is this
    server, offering ``models`` (all scripted alike, but for ``@loop model=…``)."""
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "enabled_providers": [PROVIDER_ID],
        "model": f"{PROVIDER_ID}/{MODEL_ID}",
        "small_model": f"{PROVIDER_ID}/{MODEL_ID}",
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted",
                "options": {"baseURL": base_url, "apiKey": "scripted"},
                "models": {
                    model: {
                        "name": f"Scripted {model}",
                        "tool_call": True,
                        "cost": {"input": 1.0, "output": 2.0},
                        "limit": {"context": 100_000, "output": 8_000},
                    }
                    for model in models
                },
            }
        },
    }
    if permission is not None:
        config["permission"] = permission
    return config


# --- running it -------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: in-process, Ctrl-C belongs to the host program."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ScriptedModel:
    """The scripted model served by uvicorn on 127.0.0.1, as a task of the running loop.

    ``async with ScriptedModel() as model:`` starts it on a free port (or ``port``);
    ``model.base_url`` is the ``…/v1`` URL to configure, ``model.calls`` what it answered.
    """

    def __init__(self, *, port: int = 0, handle_signals: bool = False) -> None:
        self.calls: list[ScriptedCall] = []
        self.app = create_app(self.calls)
        self._requested_port = port
        self._handle_signals = handle_signals
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the scripted model is not running")
        return f"http://{HOST}:{self.port}/v1"

    def chat_calls(self, session: str | None = None) -> list[ScriptedCall]:
        """The chat requests answered with a completion (not failed, not titles), of one
        OpenCode session if ``session`` is given."""
        return [
            call
            for call in self.calls
            if call.kind == "chat"
            and call.usage is not None
            and (session is None or call.session == session)
        ]

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._requested_port))
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server_class = uvicorn.Server if self._handle_signals else _Server
        server = server_class(config)
        self._socket, self._server = sock, server
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the scripted model stopped while starting")
            await asyncio.sleep(0.01)
        self.port = int(sock.getsockname()[1])

    async def wait(self) -> None:
        """Until the server stops (a signal when ``handle_signals``, or ``stop``)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = self._socket = None
        self.port = 0

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[ScriptedModel]:
        """Serve from a thread with an event loop of its own: for synchronous callers, and to
        share one model between tests that each run in a loop of their own."""
        loop = asyncio.new_event_loop()
        up = threading.Event()
        stopping = asyncio.Event()
        failures: list[BaseException] = []

        async def serve() -> None:
            try:
                await self.start()
            except BaseException as exc:
                failures.append(exc)
                return
            finally:
                up.set()
            await stopping.wait()
            await self.stop()

        thread = threading.Thread(
            target=loop.run_until_complete, args=(serve(),), name="scripted-model", daemon=True
        )
        thread.start()
        up.wait()
        try:
            if failures:
                raise RuntimeError("the scripted model did not start") from failures[0]
            yield self
        finally:
            if not failures:
                loop.call_soon_threadsafe(stopping.set)
            thread.join()
            loop.close()

    async def __aenter__(self) -> ScriptedModel:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _serve(port: int) -> None:
    model = ScriptedModel(port=port, handle_signals=True)
    await model.start()
    print(f"{LISTENING} {model.base_url}", flush=True)
    await model.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    arguments = parser.parse_args(argv)
    asyncio.run(_serve(arguments.port))


if __name__ == "__main__":
    main(sys.argv[1:])
