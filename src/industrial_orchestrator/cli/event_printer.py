"""How ``session watch`` prints events: JSON Lines for machines, one line each for people."""

from __future__ import annotations

import json
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.text import Text

from ..domain.money import format_usd
from .api_client import ApiClient
from .badges import badge
from .errors import CliError
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


class Directory(Protocol):
    """What the server knows that the stream may not have shown (a watch started with
    ``--since``, an agent registered before the session)."""

    def session_tasks(self) -> list[tuple[str, str]]:
        """The session's tasks as ``(id, title)``, in creation order (the plan's order)."""

    def agent_name(self, agent_id: str) -> str | None:
        """The agent's name; None when it is gone."""


class ServerDirectory:
    """A ``Directory`` asking the server, through a client the caller keeps open."""

    def __init__(self, api: ApiClient, session_id: str) -> None:
        self._api = api
        self._session_id = session_id

    def session_tasks(self) -> list[tuple[str, str]]:
        return [
            (str(task["id"]), str(task["title"]))
            for task in self._api.session_tasks(self._session_id)
        ]

    def agent_name(self, agent_id: str) -> str | None:
        return str(self._api.get_agent(agent_id).body["name"])


class TaskNames:
    """How task events name their task and agent: ``task 3/7 "Write tests"`` (its place
    in the session's plan, the plan's size, its title) and the agent's name, instead of
    ids. Learnt from the stream's ``task.created``; what the stream has not shown is
    asked of the directory once per unknown id (a failed question leaves the short id)."""

    def __init__(self, directory: Directory | None = None) -> None:
        self._directory = directory
        self._order: list[str] = []
        self._titles: dict[str, str] = {}
        self._asked: set[str] = set()
        self._agents: dict[str, str] = {}
        self.agent_of: dict[str, str] = {}
        """Task id -> the agent id of its latest lease."""

    def task(self, task_id: str, *, title: str | None = None, created: bool = False) -> str:
        """The task's label. ``created``: the event that makes the task, which appends it
        to the plan when even the directory does not know it."""
        if task_id not in self._titles:
            self._ask(task_id)
        if task_id not in self._titles and created:
            self._order.append(task_id)
            self._titles[task_id] = title or ""
        if task_id not in self._titles:
            return f"task {task_id[:8]}"
        if title:
            self._titles[task_id] = title
        place = f"task {self._order.index(task_id) + 1}/{len(self._order)}"
        named = self._titles[task_id]
        return f"{place} {json.dumps(named, ensure_ascii=False)}" if named else place

    def agent(self, agent_id: str) -> str:
        if agent_id not in self._agents:
            name = None
            if self._directory is not None:
                try:
                    name = self._directory.agent_name(agent_id)
                except CliError:
                    name = None
            self._agents[agent_id] = name or agent_id[:8]
        return self._agents[agent_id]

    def _ask(self, task_id: str) -> None:
        if self._directory is None or task_id in self._asked:
            return
        self._asked.add(task_id)
        try:
            known = self._directory.session_tasks()
        except CliError:
            return
        listed = [tid for tid, _ in known]
        on_server = set(listed)
        # The server's list is the plan in its order; tasks only the stream showed (none,
        # unless one was deleted since) keep their place after it.
        self._order = listed + [tid for tid in self._order if tid not in on_server]
        for tid, title in known:
            self._titles.setdefault(tid, title)


class HumanEventPrinter:
    """Time, then a coloured line per event; log text is written as it is.

    A long log line reaches us in parts (``part`` of ``parts``): they are written one
    after the other with no newline in between, under one prefix.

    A task's move to RUNNING is written in the same transaction as its lease, just before
    it: that line waits for the next event, and when that is the lease, the two print as
    one line naming the agent (``task 3/7 "Write tests" READY → RUNNING (agent coder-1,
    attempt 1)``). Any other event, or the end, prints it as it is.
    """

    def __init__(self, console: Console, directory: Directory | None = None) -> None:
        self._console = console
        self._open_log: tuple[object, int] | None = None  # (stream, last part written)
        self._names = TaskNames(directory)
        self._held: tuple[str, object, Text] | None = None  # (task id, at, line)

    def event(self, event: Json, raw: str) -> None:
        payload = event.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        if self._held is not None and self._joins_held(event, payload):
            return
        self._release()
        if event.get("type") == "session.log":
            self._log(event, payload)
            return
        self._end_log()
        line = _describe(event, self._names)
        task_id = payload.get("task_id")
        if (
            event.get("type") == "task.transition"
            and payload.get("to") == "RUNNING"
            and isinstance(task_id, str)
        ):
            self._held = (task_id, event.get("at"), line)
            return
        self._print(event.get("at"), line)

    def finish(self) -> None:
        self._release()
        self._end_log()

    def _joins_held(self, event: Json, payload: Json) -> bool:
        assert self._held is not None
        task_id, at, line = self._held
        agent_id = payload.get("agent_id")
        if not (
            event.get("type") == "task.leased"
            and payload.get("task_id") == task_id
            and isinstance(agent_id, str)
        ):
            return False
        self._held = None
        self._names.agent_of[task_id] = agent_id
        line.append(
            f" (agent {self._names.agent(agent_id)}, attempt {payload.get('attempt')})",
            style="dim",
        )
        self._print(at, line)
        return True

    def _release(self) -> None:
        if self._held is not None:
            _, at, line = self._held
            self._held = None
            self._print(at, line)

    def _print(self, at: object, line: Text) -> None:
        self._console.print(Text.assemble((local_time(at, CLOCK), "dim"), "  ", line))

    def _end_log(self) -> None:
        if self._open_log is not None:
            self._write("\n")
            self._open_log = None

    def _log(self, event: Json, payload: Json) -> None:
        stream = payload.get("stream")
        text = str(payload.get("text", ""))
        part = _int(payload.get("part"), 1)
        parts = _int(payload.get("parts"), 1)
        if self._open_log != (stream, part - 1):
            self._end_log()
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


def _describe(event: Json, names: TaskNames) -> Text:
    kind = str(event.get("type"))
    payload = event.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    if kind.startswith("task.") and isinstance(payload.get("task_id"), str):
        described = _describe_task(kind, payload, names)
        if described is not None:
            return described
    if kind == "session.telemetry":
        task_id = payload.get("task_id")
        line = Text("usage  ")
        if isinstance(task_id, str):
            line.append(f"{names.task(task_id)} used {_tokens(payload.get('task_tokens'))}")
            line.append(f" ({_usd(payload.get('task_cost_usd'))}); ")
        line.append(f"session total {_tokens(payload.get('tokens_used'))}")
        line.append(f" ({_usd(payload.get('cost_usd'))})")
        return line
    if kind == "session.phase":
        line = Text.assemble(
            "phase ",
            (str(payload.get("from") or "-"), "bold"),
            " → ",
            (str(payload.get("to") or "-"), "bold"),
        )
        if payload.get("reason"):
            line.append(f": {payload['reason']}")
        return line
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


_TASK_STYLES = {"RUNNING": "cyan", "COMPLETED": "green", "FAILED": "red", "CANCELLED": "dim"}
_SUMMARY_CHARS = 160


def _describe_task(kind: str, payload: Json, names: TaskNames) -> Text | None:
    """A ``task.*`` event as a sentence about the task; None for a kind not known here
    (printed as JSON, like any other)."""
    task_id = str(payload["task_id"])
    agent_id = payload.get("agent_id")
    if kind == "task.created":
        line = Text(names.task(task_id, title=_str(payload.get("title")), created=True))
        line.append(" planned", style="bold")
        details = [str(payload.get("task_type") or "")]
        if payload.get("required_capabilities"):
            details.append("needs " + ", ".join(map(str, payload["required_capabilities"])))
        if payload.get("depends_on"):
            details.append(f"after {len(payload['depends_on'])} other task(s)")
        line.append("  " + " · ".join(d for d in details if d), style="dim")
        return line
    label = names.task(task_id)
    if kind == "task.transition":
        target = str(payload.get("to"))
        line = Text.assemble(
            f"{label} {payload.get('from')} → ", (target, _TASK_STYLES.get(target, "bold"))
        )
        agent = names.agent_of.get(task_id)
        # Into RUNNING, the agent is the lease's that follows (the printer joins them);
        # out of it, the latest lease's.
        if agent and target not in ("PENDING", "READY", "RUNNING"):
            line.append(f" (agent {names.agent(agent)})", style="dim")
        if payload.get("result_summary"):
            line.append(f": {_first_line(payload['result_summary'])}")
        return line
    if kind == "task.leased" and isinstance(agent_id, str):
        names.agent_of[task_id] = agent_id
        return Text.assemble(
            f"{label} leased to ",
            (names.agent(agent_id), "bold"),
            (f" (attempt {payload.get('attempt')})", "dim"),
        )
    if kind == "task.attempt_ended" and isinstance(agent_id, str):
        outcome = str(payload.get("outcome"))
        line = Text.assemble(
            f"{label} attempt {payload.get('attempt')} by {names.agent(agent_id)}: ",
            (outcome, "green" if outcome == "completed" else "red"),
        )
        spent = [_tokens(payload.get("tokens_used")), _usd(payload.get("cost_usd"))]
        elapsed = payload.get("execution_time_ms")
        if isinstance(elapsed, int | float):
            spent.append(f"{elapsed / 1000:.1f} s")
        line.append("  " + ", ".join(spent), style="dim")
        if payload.get("error"):
            line.append(f": {_first_line(payload['error'])}")
        return line
    if kind == "task.loop_stopped" and isinstance(agent_id, str):
        line = Text.assemble(
            f"{label} attempt {payload.get('attempt')} by {names.agent(agent_id)} ",
            ("stopped by the loop guard", "red"),
            f" ({payload.get('kind')}): {_first_line(payload.get('message'))}",
        )
        if payload.get("rolled_back_count"):
            line.append(f"; rolled back {payload['rolled_back_count']} file(s)")
        if payload.get("requeued"):
            line.append("; back in the queue")
        return line
    if kind == "task.decomposed":
        subtasks = payload.get("subtasks")
        count = len(subtasks) if isinstance(subtasks, list) else "?"
        return Text(f"{label} decomposed ({payload.get('template')}) into {count} subtasks")
    if kind == "task.dependency_added" and isinstance(payload.get("depends_on"), str):
        return Text(f"{label} now waits for {names.task(payload['depends_on'])}")
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _first_line(text: object) -> str:
    line = str(text).strip().split("\n", 1)[0]
    return line if len(line) <= _SUMMARY_CHARS else line[: _SUMMARY_CHARS - 1] + "…"


def _tokens(count: object) -> str:
    return f"{count:,} tokens" if isinstance(count, int) else "? tokens"


def _usd(amount: object) -> str:
    return format_usd(float(amount)) if isinstance(amount, int | float) else "$?"
