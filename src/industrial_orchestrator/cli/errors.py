"""What can go wrong talking to a server, and the one place it becomes ``error: ...``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape


class CliError(Exception):
    """A failure the operator can act on; ``message`` says what happened and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(CliError):
    """The server answered with its error shape (or another 4xx/5xx)."""

    def __init__(self, message: str, *, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ServerUnreachable(CliError):
    """Nothing answered at the URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the orchestrator server at {url} is unreachable ({reason}). Start it with "
            "`orchestrator serve` (or `make run`), or point --url / ORCHESTRATOR_URL at a "
            "running server."
        )
        self.url = url


def describe(exc: BaseException) -> str:
    """``ConnectError: [Errno 111] Connection refused``: the kind of failure and its words."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def reported_errors(err: Console) -> Iterator[None]:
    """Turn a ``CliError`` raised inside into ``error: <message>`` on stderr and exit 1."""
    try:
        yield
    except CliError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        raise typer.Exit(1) from None
