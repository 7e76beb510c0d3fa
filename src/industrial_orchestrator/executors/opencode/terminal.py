"""What the agent says, as terminal lines: OpenCode streams text in deltas of any size,
the session's terminal shows whole lines. Deltas are buffered per part and shown a line
(or a long run without one) at a time; a tool call or the turn's end shows the rest."""

from __future__ import annotations

from typing import Any

from ...domain.events import LogStream
from ..base import LogLine
from .turn import Turn

_TEXT_FLUSH_CHARS = 400


def by_line(emit: LogLine) -> LogLine:
    """The terminal is a stream: what the agent says arrives as whole lines."""

    async def line(stream: LogStream, text: str) -> None:
        await emit(stream, text if text.endswith("\n") else text + "\n")

    return line


async def stream_text(turn: Turn, part_id: str, delta: str) -> None:
    """Add a text delta of ``part_id``, showing what now makes whole lines."""
    buffered = turn.text.get(part_id, "") + delta
    if "\n" in buffered or len(buffered) >= _TEXT_FLUSH_CHARS:
        head, _, rest = buffered.rpartition("\n") if "\n" in buffered else (buffered, "", "")
        if head.strip():
            await _say(turn, head)
        buffered = rest
    turn.text[part_id] = buffered


async def flush(turn: Turn) -> None:
    """Show the text still buffered, of every part."""
    for part_id, text in list(turn.text.items()):
        if text.strip():
            await _say(turn, text)
        turn.text[part_id] = ""


async def show_unsaid(turn: Turn, answer: str | None) -> None:
    """Show the turn's answer as read from its messages if the stream showed none of its
    text: OpenCode can say the session is idle before the text's events arrive, or the
    stream can drop, and the terminal would otherwise miss what the agent said."""
    if not turn.spoke and answer and answer.strip():
        await _say(turn, answer)


_FINAL_TOOL_STATES = frozenset({"completed", "error"})


def _tool_line(part: dict[str, Any]) -> str:
    """A tool call's state as a terminal line: ``write [completed] hello.py``."""
    state = part.get("state") or {}
    status = str(state.get("status") or "")
    title = state.get("title") or _tool_input(state.get("input"))
    line = f"{part.get('tool')} [{status}]" + (f" {title}" if title else "")
    if status == "error":
        line += f": {str(state.get('error') or '')[:500]}"
    return line


def tool_call(part: dict[str, Any]) -> str:
    return str(part.get("callID") or part.get("id"))


async def show_untold_tools(turn: Turn, messages: list[dict[str, Any]]) -> None:
    """Show how each of the turn's tool calls ended, as read from its messages, where the
    stream did not: OpenCode can be seen idle (by a poll) before the stream carries the
    last calls' events, and the stream can drop."""
    for message in messages:
        if (message.get("info") or {}).get("role") != "assistant":
            continue
        for part in message.get("parts") or ():
            if not isinstance(part, dict) or part.get("type") != "tool":
                continue
            status = str((part.get("state") or {}).get("status") or "")
            if status in _FINAL_TOOL_STATES:
                await show_tool(turn, part)


async def show_tool(turn: Turn, part: dict[str, Any]) -> bool:
    """Show the tool call's state unless it was shown already; whether it was new."""
    status = str((part.get("state") or {}).get("status") or "")
    call = tool_call(part)
    if turn.tool_states.get(call) == status:
        return False
    turn.tool_states[call] = status
    await flush(turn)
    await turn.emit(LogStream.TOOL, _tool_line(part))
    return True


def _tool_input(raw: Any) -> str:
    if not isinstance(raw, dict):
        return ""
    for key in ("filePath", "path", "command", "pattern", "url"):
        if raw.get(key):
            return str(raw[key])[:200]
    return ""


async def _say(turn: Turn, text: str) -> None:
    turn.spoke = True
    await turn.emit(LogStream.AGENT, text)
