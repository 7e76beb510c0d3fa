"""How sessions look to a person: a one-line summary, the list table, the detail view."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..domain.money import format_usd
from .badges import badge

Json = dict[str, Any]
PROMPT_PREVIEW_CHARS = 500


def local_time(value: object, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An ISO timestamp from the API in the local time zone; ``-`` when absent."""
    if not isinstance(value, str) or not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone().strftime(fmt)


def plain(value: object) -> Text:
    """Server text as it is: never read as Rich markup."""
    return Text(str(value))


def summary(session: Json) -> Text:
    """``⚙️ RUNNING  <id>  "title"  (priority HIGH, version 3)`` and the status reason."""
    line = Text.assemble(
        badge(session.get("status")),
        "  ",
        (str(session.get("id")), "cyan"),
        "  ",
        json.dumps(session.get("title"), ensure_ascii=False),
        (f"  (priority {session.get('priority')}, version {session.get('version')})", "dim"),
    )
    if session.get("status_reason"):
        line.append(f" - {session['status_reason']}", style="italic")
    return line


def sessions_table(items: list[Json]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("ID", style="cyan", no_wrap=True)
    table.add_column("TITLE", overflow="fold")
    table.add_column("STATUS", no_wrap=True)
    table.add_column("PRIORITY", no_wrap=True)
    table.add_column("UPDATED", no_wrap=True)
    for item in items:
        table.add_row(
            plain(item.get("id")),
            plain(item.get("title")),
            badge(item.get("status")),
            plain(item.get("priority")),
            local_time(item.get("updated_at")),
        )
    return table


def _prompt_preview(prompt: object) -> str:
    text = str(prompt or "")
    if len(text) <= PROMPT_PREVIEW_CHARS:
        return text
    return f"{text[:PROMPT_PREVIEW_CHARS]}… ({len(text)} characters; --json shows all)"


def session_details(session: Json) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    status = badge(session.get("status"))
    if session.get("status_reason"):
        status = Text.assemble(status, (f" - {session['status_reason']}", "italic"))
    attempt = str(session.get("attempt"))
    if session.get("retry_of"):
        attempt += f" (retry of {session['retry_of']})"
    duration = session.get("duration_seconds")
    rows: list[tuple[str, RenderableType]] = [
        ("ID", str(session.get("id"))),
        ("Title", str(session.get("title"))),
        ("Status", status),
        ("Phase", str(session.get("phase") or "-")),
        ("Priority", str(session.get("priority"))),
        ("Version", str(session.get("version"))),
        ("Attempt", attempt),
        ("Created", local_time(session.get("created_at"))),
        ("Updated", local_time(session.get("updated_at"))),
        ("Started", local_time(session.get("started_at"))),
        ("Finished", local_time(session.get("finished_at"))),
        ("Duration", f"{duration:.1f} s" if isinstance(duration, int | float) else "-"),
        ("Tokens", str(session.get("tokens_used"))),
        ("Cost", format_usd(float(session.get("cost_usd") or 0))),
        ("Workspace", str(session.get("workspace") or "-")),
        ("Metadata", json.dumps(session.get("metadata") or {}, ensure_ascii=False)),
        ("Actions", ", ".join(session.get("allowed_actions") or []) or "-"),
        ("Prompt", _prompt_preview(session.get("initial_prompt"))),
    ]
    for name, value in rows:
        table.add_row(name, plain(value) if isinstance(value, str) else value)
    return table


def transitions_table(rows: list[Json]) -> Table:
    table = Table(title="History", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("AT", no_wrap=True)
    table.add_column("FROM", no_wrap=True)
    table.add_column("TO", no_wrap=True)
    table.add_column("ACTOR", no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for row in rows:
        source = row.get("from_state")
        table.add_row(
            str(row.get("seq")),
            local_time(row.get("at")),
            badge(source) if source else Text("-", style="dim"),
            badge(row.get("to_state")),
            plain(row.get("actor")),
            plain(row.get("reason") or ""),
        )
    return table


def session_view(session: Json, history: list[Json]) -> Group:
    """``session show``: the fields, then the transition history."""
    return Group(session_details(session), Text(), transitions_table(history))
