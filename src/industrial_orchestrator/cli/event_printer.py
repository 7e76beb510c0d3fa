"""How ``session watch`` prints events: JSON Lines for machines, one line each for people."""

from __future__ import annotations

import json
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.text import Text

from .badges import badge
from .session_views import local_time

Json = dict[str, Any]
CLOCK = "%H:%M:%S"


class EventPrinter(Protocol):
    def event(self, event: Json, raw: str) -> None:
        """Print one event; ``raw`` is the frame's text as the server sent it."""

    def finish(self) -> None:
        """End any line left open (a log line whose last part has not come)."""


class JsonLinesPrinter:
    """Each event as the server's JSON on a line of its own, flushed at once."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def event(self, event: Json, raw: str) -> None:
        line = raw if "\n" not in raw and "\r" not in raw else json.dumps(event)
        self._out.write(line + "\n")
        self._out.flush()

    def finish(self) -> None:
        self._out.flush()


class HumanEventPrinter:
    """Time, then a coloured line per event; log text is written as it is.

    A long log line reaches us in parts (``part`` of ``parts``): they are written one
    after the other with no newline in between, under one prefix.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._open_log: tuple[object, int] | None = None  # (stream, last part written)

    def event(self, event: Json, raw: str) -> None:
        payload = event.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        if event.get("type") == "session.log":
            self._log(event, payload)
            return
        self.finish()
        self._console.print(
            Text.assemble((local_time(event.get("at"), CLOCK), "dim"), "  ", _describe(event))
        )

    def finish(self) -> None:
        if self._open_log is not None:
            self._write("\n")
            self._open_log = None

    def _log(self, event: Json, payload: Json) -> None:
        stream = payload.get("stream")
        text = str(payload.get("text", ""))
        part = _int(payload.get("part"), 1)
        parts = _int(payload.get("parts"), 1)
        if self._open_log != (stream, part - 1):
            self.finish()
            prefix = Text.assemble(
                (local_time(event.get("at"), CLOCK), "dim"), "  ", (f"{stream} │ ", "dim")
            )
            self._console.print(prefix, end="")
        self._write(text)
        if part < parts:
            self._open_log = (stream, part)
            return
        self._open_log = None
        if not text.endswith("\n"):
            self._write("\n")

    def _write(self, text: str) -> None:
        # Log text goes out untouched (ANSI colours of the tool included), not through
        # Rich, which would read it as markup and drop control characters.
        self._console.file.write(text)
        self._console.file.flush()


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) else default


def _describe(event: Json) -> Text:
    kind = str(event.get("type"))
    payload = event.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    if kind == "session.created":
        line = Text.assemble(
            badge(payload.get("status")),
            f"  created {json.dumps(payload.get('title'), ensure_ascii=False)}",
            (f"  priority {payload.get('priority')}, attempt {payload.get('attempt')}", "dim"),
        )
        if payload.get("retry_of"):
            line.append(f", retry of {payload['retry_of']}", style="dim")
        return line
    if kind == "session.transition":
        source = payload.get("from")
        line = Text.assemble(
            badge(source) if source else Text("-"),
            " → ",
            badge(payload.get("to")),
            (f"  by {payload.get('actor')}", "dim"),
        )
        if payload.get("reason"):
            line.append(f": {payload['reason']}")
        if payload.get("phase"):
            line.append(f"  [{payload['phase']}]", style="dim")
        return line
    if kind == "checkpoint.created":
        line = Text.assemble(
            "💾 checkpoint ",
            (f"#{payload.get('checkpoint_seq')} ", "bold"),
            json.dumps(payload.get("label"), ensure_ascii=False),
        )
        if payload.get("reason"):
            line.append(f": {payload['reason']}")
        return line
    return Text.assemble(
        (kind, "bold"), "  ", (json.dumps(payload, ensure_ascii=False, sort_keys=True), "dim")
    )
