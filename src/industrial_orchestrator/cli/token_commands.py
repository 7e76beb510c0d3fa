"""``orchestrator token create|list|revoke``: operators' API tokens, on this machine's
database (like ``migrate``), so the first token can be made before anyone can sign in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from .server_commands import migrate_or_exit, settings_or_exit

if TYPE_CHECKING:
    from ..config import Settings
    from ..services.operator_tokens import OperatorTokens

token_app = typer.Typer(
    name="token",
    help="Operators' API tokens (asked for on a non-loopback bind, or with AUTH_REQUIRED).",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@asynccontextmanager
async def token_service(settings: Settings) -> AsyncIterator[OperatorTokens]:
    from ..bootstrap import operator_tokens

    async with operator_tokens(settings) as tokens:
        yield tokens


def _prepared() -> Settings:
    """Settings, logs on stderr (stdout carries the answer), the schema up to date."""
    import sys

    from ..logs import configure_logging

    settings = settings_or_exit()
    configure_logging(settings.log_level, stream=sys.stderr)
    migrate_or_exit(settings)
    return settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


@token_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the token is for, e.g. ci or alice")],
    role: Annotated[
        str, typer.Option(help="operator (reads and commands) or viewer (reads only)")
    ] = "operator",
) -> None:
    """Make a token and print it, once: only its digest is kept."""
    from ..domain.errors import OrchestratorError
    from ..domain.operator_tokens import Role

    if role not in {r.value for r in Role}:
        raise _fail(f"--role must be operator or viewer, not {role!r}", 2)
    settings = _prepared()

    async def make() -> str:
        async with token_service(settings) as tokens:
            return (await tokens.create(name, Role(role))).secret

    try:
        secret = asyncio.run(make())
    except OrchestratorError as exc:
        raise _fail(exc.message) from None
    print(secret)
    err.print(
        f"token {name!r} ({role}) made; it is shown this once: keep it somewhere safe. "
        "Send it as `Authorization: Bearer <token>` or sign in with it at /login.",
        highlight=False,
    )


@token_app.command("list")
def list_tokens(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts")] = False,
) -> None:
    """Every token: name, role, when made, whether revoked (never the token itself)."""
    settings = _prepared()

    async def read() -> list[dict[str, str | None]]:
        async with token_service(settings) as tokens:
            return [
                {
                    "name": token.name,
                    "role": token.role.value,
                    "created_at": token.created_at.isoformat(),
                    "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
                }
                for token in await tokens.list()
            ]

    rows = asyncio.run(read())
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table("NAME", "ROLE", "CREATED (UTC)", "STATUS", box=None)
    for row in rows:
        created = str(row["created_at"])[:19].replace("T", " ")
        status = (
            f"revoked {str(row['revoked_at'])[:19].replace('T', ' ')}"
            if row["revoked_at"]
            else "active"
        )
        table.add_row(row["name"], row["role"], created, status)
    out.print(table)


@token_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The token's name")]) -> None:
    """Revoke a token at once: its next request, or page, is refused."""
    from ..domain.errors import OrchestratorError

    settings = _prepared()

    async def drop() -> None:
        async with token_service(settings) as tokens:
            await tokens.revoke(name)

    try:
        asyncio.run(drop())
    except OrchestratorError as exc:
        raise _fail(exc.message) from None
    err.print(f"token {name!r} revoked", highlight=False)
