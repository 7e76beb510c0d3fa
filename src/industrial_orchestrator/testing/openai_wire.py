"""The OpenAI chat-completions wire format, as far as the scripted model speaks it.

Reading a request: the text of its messages (a string or a list of ``{type, text}``
parts) and the tools it offers. Writing the answer: one ``chat.completion`` JSON body, or
the ``chat.completion.chunk`` events of a stream (role, content or tool-call argument
deltas, the finish reason, then a usage chunk with no choices, then ``[DONE]``), and the
error body a provider sends with a 4xx or 5xx. Nothing here reads a script.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse


def text_of(content: Any) -> str:
    """The text of a message's ``content``: a string or a list of ``{type, text}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def chat_messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The request's ``messages`` that are objects (none if it has no list)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [message for message in messages if isinstance(message, Mapping)]


def system_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the system (or developer) messages, joined."""
    return "\n".join(
        text_of(message.get("content"))
        for message in messages
        if message.get("role") in ("system", "developer")
    )


def offered_tools(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the function tools the request offers."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return ()
    names = (tool.get("function", {}).get("name") for tool in tools if isinstance(tool, Mapping))
    return tuple(str(name) for name in names if name)


def token_usage(prompt: int, completion: int) -> dict[str, int]:
    """The ``usage`` object of a completion."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@dataclass(frozen=True)
class ToolCall:
    """One function call in an answer."""

    id: str
    name: str
    arguments: str  # JSON text


def _pieces(text: str, count: int = 4) -> list[str]:
    """``text`` cut into about ``count`` pieces (streamed as separate deltas)."""
    if not text:
        return []
    size = max(1, -(-len(text) // count))
    return [text[start : start + size] for start in range(0, len(text), size)]


class Completion:
    """The chunks (or the single JSON body) of one chat completion: ``text``, or a call of
    ``tool_call`` when given."""

    def __init__(
        self,
        model: str,
        usage: dict[str, int],
        *,
        text: str = "",
        tool_call: ToolCall | None = None,
    ) -> None:
        self.model = model
        self.usage = usage
        self.text = text
        self.tool_call = tool_call
        self.id = f"chatcmpl-scripted-{time.monotonic_ns()}"
        self.created = int(time.time())

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_call is not None else "stop"

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def chunks(self) -> list[dict[str, Any]]:
        tool_call = self.tool_call
        if tool_call is not None:
            call = {
                "index": 0,
                "id": tool_call.id,
                "type": "function",
                "function": {"name": tool_call.name, "arguments": ""},
            }
            chunks = [self._chunk({"role": "assistant", "content": None, "tool_calls": [call]})]
            chunks += [
                self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                for piece in _pieces(tool_call.arguments)
            ]
        else:
            chunks = [self._chunk({"role": "assistant", "content": ""})]
            chunks += [self._chunk({"content": piece}) for piece in _pieces(self.text)]
        chunks.append(self._chunk({}, self.finish_reason))
        usage_chunk = self._chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = self.usage
        chunks.append(usage_chunk)
        return chunks

    def message(self) -> dict[str, Any]:
        tool_call = self.tool_call
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if tool_call is not None:
            message["tool_calls"] = [
                {
                    "id": tool_call.id,
                    "type": "function",
                    "function": {"name": tool_call.name, "arguments": tool_call.arguments},
                }
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }

    async def stream(self, spread: float = 0.0) -> AsyncIterator[bytes]:
        """The server-sent events of ``chunks``, spread over ``spread`` seconds."""
        chunks = self.chunks()
        pause = spread / len(chunks)
        for chunk in chunks:
            if pause:
                await asyncio.sleep(pause)
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"


def error_response(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    """A provider's error answer, with OpenAI's ``{"error": {...}}`` body."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": "scripted"}}
    return JSONResponse(body, status_code=status)
