"""A scripted OpenAI-compatible model server, driven by directives in the prompt.

OpenCode talks to it as to any ``@ai-sdk/openai-compatible`` provider (see
``opencode_config``); what the "model" does is written in the user's prompt, one
directive a line (the language: ``model_script``; the answers: ``model_replies``; the
wire format: ``openai_wire``).

Every request is recorded (``ScriptedModel.calls``, also ``GET /_scripted/calls``) with
the usage reported, so tests can compare it with what the orchestrator recorded.

Run it in-process (``async with ScriptedModel() as model: model.base_url``) or as a
process: ``python -m industrial_orchestrator.testing.scripted_model --port 0`` prints
``scripted model listening on http://127.0.0.1:PORT/v1`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .model_replies import plan_reply, usage_for
from .openai_wire import Completion, error_response, offered_tools

PROVIDER_ID = "scripted"
MODEL_ID = "coder"
HOST = "127.0.0.1"
LISTENING = "scripted model listening on"


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
            return error_response(400, "the body must be a JSON object")
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
                tools=offered_tools(body),
                request=body,
            )
        )
        if usage is None:
            kind = "server_error" if reply.status >= 500 else "invalid_request_error"
            response = error_response(
                reply.status, f"scripted failure (@fail {reply.status})", kind
            )
            if reply.retry_after is not None:
                # OpenCode waits this long before retrying (else 2 s, doubling, up to 30 s).
                response.headers["retry-after-ms"] = str(round(reply.retry_after * 1000))
            return response
        completion = Completion(
            str(body.get("model") or MODEL_ID),
            usage,
            text=reply.text,
            tool_call=reply.tool_call,
        )
        if not stream:
            if reply.slow:
                await asyncio.sleep(reply.slow)
            return JSONResponse(completion.message())
        headers = {"Cache-Control": "no-cache"}
        return StreamingResponse(
            completion.stream(reply.slow), media_type="text/event-stream", headers=headers
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
