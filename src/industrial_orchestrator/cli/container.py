"""``orchestrator container secrets|serve``: the image's first start, so that
``docker-compose up -d`` right after cloning runs a stack that is secure as it stands.

``docker-compose.yml`` passes every setting through from ``.env`` as ``${NAME:-}``: an
empty value means unset (no ``.env`` at all is the quick start). Two steps:

1. ``secrets`` (the one-shot ``secrets`` service, as root, before PostgreSQL starts):
   ``SECRET_KEY``, ``AGENT_REGISTRATION_TOKEN`` and the database password are generated
   once and kept in ``ORCHESTRATOR_HOME/secrets`` (mode 0600, owned by the orchestrator's
   user); the database password also goes, owned by PostgreSQL's user, to the volume
   PostgreSQL reads it from (``POSTGRES_PASSWORD_FILE``). A value set in ``.env`` wins.
2. ``serve`` (the orchestrator's command): the kept secrets fill what ``.env`` left unset,
   the schema is migrated, and on the first start (no operator token exists) an operator
   token is made and printed once, for ``docker-compose logs orchestrator``; then it
   serves as ``orchestrator serve`` does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ..kept_secrets import KeptSecretError, kept_secret

if TYPE_CHECKING:
    from ..config import Settings

container_app = typer.Typer(
    name="container",
    help="The container image's start-up steps (docker-compose.yml runs them).",
    no_args_is_help=True,
)
err = Console(stderr=True, soft_wrap=True)

SECRETS_DIR = "secrets"
KEPT = ("SECRET_KEY", "AGENT_REGISTRATION_TOKEN", "DB_PASSWORD")
"""The variables generated on the first start when ``.env`` does not set them."""
FIRST_TOKEN_NAME = "admin"
POSTGRES_PASSWORD_NAME = "db_password"


def drop_empty_settings(environ: MutableMapping[str, str]) -> None:
    """Unset the settings docker-compose passed as empty strings (``${NAME:-}``): for
    the settings model an empty value is a value, e.g. not a number."""
    from ..config import Settings

    names = {name.upper() for name in Settings.model_fields}
    for key in [key for key, value in environ.items() if key.upper() in names]:
        if not environ[key].strip():
            del environ[key]


def secrets_dir(environ: MutableMapping[str, str]) -> Path:
    return Path(environ.get("ORCHESTRATOR_HOME") or ".orchestrator") / SECRETS_DIR


def keep_secrets(
    environ: MutableMapping[str, str], *, owner: tuple[int, int] | None = None
) -> dict[str, str]:
    """Each of ``KEPT``: the value ``environ`` sets, else the one kept (made on the first
    call) in the secrets directory. ``owner`` (uid, gid), when running as root: who the
    directory and the files made are given to, so the orchestrator's user can read them."""
    directory = secrets_dir(environ)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if owner is not None:
        os.chown(directory, *owner)
    values = {}
    for name in KEPT:
        given = environ.get(name, "").strip()
        if given:
            values[name] = given
            continue
        path = directory / name.lower()
        values[name] = kept_secret(path)
        if owner is not None:
            os.chown(path, *owner)
    return values


def write_postgres_password(password: str, path: Path, *, owner: tuple[int, int] | None) -> None:
    """The password PostgreSQL creates its user with (``POSTGRES_PASSWORD_FILE``), readable
    by PostgreSQL's user only. Rewritten at every start, so a ``DB_PASSWORD`` set in .env
    reaches it; PostgreSQL reads it only when it creates its database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.new")
    draft.unlink(missing_ok=True)
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(password)
    if owner is not None:
        os.chown(draft, *owner)
    os.replace(draft, path)


@container_app.command("secrets")
def secrets_command(
    postgres_password_file: Annotated[
        Path | None,
        typer.Option(help="Where PostgreSQL reads its password (POSTGRES_PASSWORD_FILE)"),
    ] = None,
    postgres_user: Annotated[
        str, typer.Option(help="uid:gid of PostgreSQL's user (postgres:15 image: 999:999)")
    ] = "999:999",
    orchestrator_user: Annotated[
        str, typer.Option(help="uid:gid of the user the orchestrator runs as")
    ] = "10001:10001",
) -> None:
    """Generate the stack's secrets on the first start and keep them (run as root)."""
    environ = os.environ
    drop_empty_settings(environ)
    as_root = os.geteuid() == 0
    try:
        values = keep_secrets(environ, owner=_ids(orchestrator_user) if as_root else None)
        if postgres_password_file is not None:
            write_postgres_password(
                values["DB_PASSWORD"],
                postgres_password_file,
                owner=_ids(postgres_user) if as_root else None,
            )
    except (KeptSecretError, OSError) as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    given = [name for name in KEPT if environ.get(name)]
    err.print(
        f"secrets ready in {secrets_dir(environ)}"
        + (f" ({', '.join(given)} from the environment)" if given else ""),
        highlight=False,
    )


def _ids(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise typer.BadParameter(f"expected uid:gid, got {text!r}") from None


async def first_operator_token(settings: Settings) -> str | None:
    """An operator token, made only when the database holds none at all (the stack's
    first start); None on every later start, even when all were revoked since."""
    from ..domain.operator_tokens import Role
    from .token_commands import token_service

    async with token_service(settings) as tokens:
        if await tokens.list():
            return None
        return (await tokens.create(FIRST_TOKEN_NAME, Role.OPERATOR)).secret


def announce_first_token(secret: str) -> None:
    print(
        "\n".join(
            [
                "=" * 72,
                f"First start: an operator token named {FIRST_TOKEN_NAME!r} was made. It is",
                "shown this once; sign in with it on the dashboard, or send it as",
                "`Authorization: Bearer <token>`:",
                "",
                f"    {secret}",
                "",
                "More: docker-compose exec orchestrator orchestrator token create --name NAME",
                "=" * 72,
            ]
        ),
        flush=True,
    )


@container_app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to bind")] = "0.0.0.0",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind")] = 8000,
) -> None:
    """Fill unset secrets from the kept ones, print the first operator token, serve."""
    from ..domain.errors import OrchestratorError
    from .server_commands import (
        migrate_or_exit,
        refuse_open_registration,
        refuse_unsafe_public_bind,
        serve,
        settings_or_exit,
    )

    environ = os.environ
    drop_empty_settings(environ)
    try:
        environ.update(_kept_for_serving(environ))
    except (KeptSecretError, OSError) as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    settings = settings_or_exit()
    # Refused before a token is made and shown that no server would then accept.
    refuse_open_registration(settings, host)
    refuse_unsafe_public_bind(settings, host)
    migrate_or_exit(settings)
    try:
        secret = asyncio.run(first_operator_token(settings))
    except OrchestratorError as exc:
        err.print(f"[bold red]error:[/] {exc.message}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    if secret is not None:
        announce_first_token(secret)
    serve(host=host, port=port)


def _kept_for_serving(environ: MutableMapping[str, str]) -> dict[str, str]:
    """What ``serve`` needs of ``KEPT`` and ``environ`` lacks. The database password
    must come from the ``secrets`` step (PostgreSQL was created with it); the two keys are
    made here when missing, as when the image runs alone on SQLite."""
    directory = secrets_dir(environ)
    filled = {}
    for name in ("SECRET_KEY", "AGENT_REGISTRATION_TOKEN"):
        if not environ.get(name):
            filled[name] = kept_secret(directory / name.lower())
    password = directory / "db_password"
    if environ.get("DB_HOST") and not environ.get("DB_PASSWORD"):
        if not password.exists():
            raise KeptSecretError(
                f"DB_PASSWORD is not set and {password} does not exist: run "
                "`orchestrator container secrets` first (docker-compose's secrets service)"
            )
        filled["DB_PASSWORD"] = kept_secret(password)
    return filled
