"""What the agent says, as terminal lines: OpenCode streams text in deltas of any size,
the session's terminal shows whole lines. Deltas are buffered per part and shown a line
(or a long run without one) at a time; a tool call or the turn's end shows the rest."""

from __future__ import annotations

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


async def _say(turn: Turn, text: str) -> None:
    turn.spoke = True
    await turn.emit(LogStream.AGENT, text)
