"""``orchestrator session ...``: a remote client of a running server.

Every command talks to the server at ``--url`` (or ``ORCHESTRATOR_URL``) over HTTP, or
over a WebSocket for ``watch``. ``--json`` prints the API's JSON instead of tables. Any
failure is one ``error: <message>`` line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.text import Text

from ..domain.priorities import Priority
from ..domain.sessions.states import SessionState
from .api_client import DEFAULT_URL, MAX_PAGE_SIZE, ApiClient, Reply
from .badges import is_final
from .errors import CliError, reported_errors
from .event_printer import EventPrinter, HumanEventPrinter, JsonLinesPrinter, ServerDirectory
from .session_views import session_view, sessions_table, summary
from .watch import Watch

PIPED_WIDTH = 160  # tables written to a pipe or file are not cut at 80 columns
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C

session_app = typer.Typer(
    name="session",
    help="Create, list, drive and watch sessions on a running server.",
    no_args_is_help=True,
)

Url = Annotated[
    str,
    typer.Option(
        "--url", envvar="ORCHESTRATOR_URL", help="Address of the server", show_envvar=True
    ),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON (one document) instead of tables")
]
SessionId = Annotated[str, typer.Argument(metavar="ID", help="The session's id")]
Reason = Annotated[
    str | None, typer.Option("--reason", "-r", help="Why; recorded in the session's history")
]
ExpectedVersion = Annotated[
    int | None,
    typer.Option(
        "--expected-version",
        min=1,
        help="Refuse (409) unless the session is still at this version",
    ),
]


def _out() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


@contextmanager
def _api(url: str) -> Iterator[ApiClient]:
    """A client of the server at ``url``; a ``CliError`` inside ends the command (exit 1)."""
    with reported_errors(_err()), ApiClient(url) as api:
        yield api


def _print_json(document: Any) -> None:
    typer.echo(document if isinstance(document, str) else json.dumps(document, ensure_ascii=False))


def _prompt(prompt: str | None, prompt_file: str | None) -> str:
    if (prompt is None) == (prompt_file is None):
        raise typer.BadParameter("give the prompt with either --prompt or --prompt-file")
    if prompt is not None:
        return prompt
    assert prompt_file is not None
    if prompt_file == "-":
        return sys.stdin.read()
    try:
        return Path(prompt_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--prompt-file") from None


def _metadata(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    return value


@session_app.command()
def create(
    title: Annotated[str, typer.Argument(help="Short human-readable name, 1-200 characters")],
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="The instruction for the agents")
    ] = None,
    prompt_file: Annotated[
        str | None,
        typer.Option("--prompt-file", help="Read the prompt from this file ('-' for stdin)"),
    ] = None,
    priority: Annotated[
        Priority | None,
        typer.Option(
            case_sensitive=False, metavar="PRIORITY", help="LOW, MEDIUM, HIGH or CRITICAL"
        ),
    ] = None,
    workspace: Annotated[
        str | None, typer.Option(help="Path of the git repository the agents work in")
    ] = None,
    metadata: Annotated[str | None, typer.Option(help="Free-form JSON object")] = None,
    start: Annotated[bool, typer.Option("--start", help="Start (or queue) it at once")] = False,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Create a session (PENDING, or started at once with --start)."""
    body: dict[str, Any] = {
        "title": title,
        "initial_prompt": _prompt(prompt, prompt_file),
        "metadata": _metadata(metadata),
        "auto_start": start,
    }
    if priority is not None:
        body["priority"] = priority.value
    if workspace is not None:
        body["workspace"] = workspace
    with _api(url) as api:
        reply = api.create_session(body)
    if as_json:
        _print_json(reply.text)
        return
    _out().print(Text.assemble("Created ", summary(reply.body)))


@session_app.command("list")
def list_sessions(
    status: Annotated[
        list[SessionState] | None,
        typer.Option(
            "--status",
            "-s",
            case_sensitive=False,
            metavar="STATE",
            help="Only this state (repeatable)",
        ),
    ] = None,
    priority: Annotated[
        list[Priority] | None,
        typer.Option(
            case_sensitive=False, metavar="PRIORITY", help="Only this priority (repeatable)"
        ),
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Text searched in title and prompt")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_PAGE_SIZE, help="At most this many sessions")
    ] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (newest first)")] = 0,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """List sessions, newest first.

    --json prints {"items": [...], "total", "offset", "limit"}, each item the API's session.
    """
    with _api(url) as api:
        window = api.sessions_window(
            offset=offset,
            limit=limit,
            statuses=[s.value for s in status or ()],
            priorities=[p.value for p in priority or ()],
            text=query,
        )
    if as_json:
        _print_json(window)
        return
    out = _out()
    items, total = window["items"], window["total"]
    if not items:
        out.print("No sessions." if total == 0 else f"No sessions past {offset} ({total} in all).")
        return
    out.print(sessions_table(items))
    shown = f"{offset + 1}-{offset + len(items)} of {total}"
    if offset + len(items) < total:
        shown += f"; next page: --offset {offset + len(items)}"
    out.print(Text(shown, style="dim"))


@session_app.command()
def show(session_id: SessionId, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show a session's fields and its transition history.

    --json prints {"session": <the session>, "transitions": [<its history>]}.
    """
    with _api(url) as api:
        session = api.get_session(session_id).body
        history = api.transitions(session_id).body
    if as_json:
        _print_json({"session": session, "transitions": history})
        return
    _out().print(session_view(session, history))


_ACTIONS = {
    "start": "Start a session: PENDING -> RUNNING (QUEUED when every slot is taken). On a "
    "FAILED, TIMEOUT or STOPPED session, creates and starts its retry instead.",
    "pause": "Pause a running session: RUNNING -> PAUSED.",
    "resume": "Resume a session: PAUSED, DEGRADED or PARTIALLY_COMPLETED -> RUNNING.",
    "stop": "Stop a session: RUNNING, PAUSED or DEGRADED -> STOPPED.",
    "cancel": "Cancel a session: PENDING, QUEUED or PAUSED -> CANCELLED.",
}


def _action_command(action: str) -> Callable[..., None]:
    def command(
        session_id: SessionId,
        reason: Reason = None,
        expected_version: ExpectedVersion = None,
        url: Url = DEFAULT_URL,
        as_json: AsJson = False,
    ) -> None:
        with _api(url) as api:
            reply = api.act(session_id, action, reason=reason, expected_version=expected_version)
        if as_json:
            _print_json(reply.text)
            return
        _print_moved(session_id, reply)

    command.__name__ = action
    command.__doc__ = _ACTIONS[action]
    return command


def _print_moved(session_id: str, reply: Reply) -> None:
    out = _out()
    session = reply.body
    if reply.status == 201:  # start on an ended session created its next attempt
        out.print(
            f"Session {session_id} had ended, so its retry was created and started: "
            f"attempt {session.get('attempt')}, new id {session.get('id')}",
            style="yellow",
            markup=False,
        )
    out.print(summary(session))


for _action in _ACTIONS:
    session_app.command(_action)(_action_command(_action))


@session_app.command()
def retry(
    session_id: SessionId,
    start: Annotated[bool, typer.Option("--start", help="Start (or queue) it at once")] = False,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Create the next attempt of a FAILED, TIMEOUT or STOPPED session (a new session)."""
    with _api(url) as api:
        reply = api.retry(session_id, start=start)
    if as_json:
        _print_json(reply.text)
        return
    session = reply.body
    _out().print(
        Text.assemble(
            f"Created attempt {session.get('attempt')} of {session_id}: ", summary(session)
        )
    )


@session_app.command()
def watch(
    session_id: SessionId,
    since: Annotated[
        int, typer.Option(min=0, help="Show only events after this seq (0: all history)")
    ] = 0,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep watching after the session ended (Ctrl-C)"),
    ] = False,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Print a session's events live: history first, then as they happen.

    Reconnects by itself when the connection drops or the server restarts, without
    repeating or losing an event. Exits 0 once the session has ended (COMPLETED, FAILED,
    TIMEOUT, STOPPED, CANCELLED or ORPHANED) unless --follow is given. --json prints one
    event per line (JSON Lines).
    """
    err = _err()
    printer: EventPrinter = JsonLinesPrinter(sys.stdout)
    try:
        with reported_errors(err), ApiClient(url) as api:
            watched = _uuid(session_id)
            if not as_json:
                # Kept open for the watch: task events name tasks and agents it looks up.
                printer = HumanEventPrinter(_out(), ServerDirectory(api, str(watched)))
            watcher = Watch(
                url=url,
                session_id=watched,
                printer=printer,
                notice=lambda text: err.print(text, style="dim", markup=False),
                since=since,
                follow=follow,
            )
            ended = is_final(api.get_session(str(watcher.session_id)).body.get("status"))
            if ended and not follow:
                watcher.print_stored(api)
                return
            watcher.run()
    except KeyboardInterrupt:
        raise typer.Exit(INTERRUPTED) from None
    finally:
        printer.finish()


def _uuid(session_id: str) -> UUID:
    try:
        return UUID(session_id)
    except ValueError:
        raise CliError(f"{session_id!r} is not a session id (a UUID)") from None
