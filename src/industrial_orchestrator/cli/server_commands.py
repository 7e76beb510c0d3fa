"""The server-side commands: ``serve``, ``migrate`` and ``version``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from .. import __version__

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ..config import Settings

err = Console(stderr=True, soft_wrap=True)


def settings_or_exit() -> Settings:
    # Imported here: pydantic-settings and SQLAlchemy would slow every ``session`` command.
    from ..config import ConfigurationError, load_settings

    try:
        return load_settings()
    except ConfigurationError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def signing_settings_or_exit(settings: Settings) -> Settings:
    """``settings`` with the key the server signs with: ``SECRET_KEY``, else the one kept
    in ``ORCHESTRATOR_HOME`` (made on the first start), so restarts keep agents' tokens."""
    from ..kept_secrets import KeptSecretError, with_kept_secret_key

    try:
        return with_kept_secret_key(settings)
    except (KeptSecretError, OSError) as exc:
        err.print(
            f"[bold red]error:[/] SECRET_KEY is not set and the key kept for it cannot be "
            f"used: {exc}",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(2) from None


def migrate_or_exit(settings: Settings) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from .. import bootstrap

    try:
        asyncio.run(bootstrap.migrate(settings))
    except (OSError, SQLAlchemyError) as exc:
        # SQLAlchemy wraps the driver's error; the driver's own words say what is wrong
        # (refused connection, unknown database or role) without the SQL or the URL.
        reason = getattr(exc, "orig", None) or exc
        first_line = str(reason).strip().splitlines()[0] if str(reason).strip() else ""
        err.print(
            f"[bold red]error:[/] cannot reach the database {settings.database_display}: "
            f"{type(reason).__name__}: {first_line}",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(1) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def trusted_hosts_for(settings: Settings, host: str) -> list[str]:
    """The ``Host`` names the server answers to: loopback names, the bound address, the
    hosts of ``ALLOWED_HOSTS`` origins and ``TRUSTED_HOSTS`` (which may be ``*``)."""
    from urllib.parse import urlsplit

    extra = [name.strip() for name in settings.trusted_hosts.split(",") if name.strip()]
    if "*" in extra:
        return ["*"]
    origins = [
        urlsplit(origin).hostname or "" for origin in settings.allowed_origins if origin != "*"
    ]
    names = [*LOOPBACK_NAMES, host.strip("[]"), *origins, *extra]
    return list(dict.fromkeys(name for name in names if name))


def refuse_open_registration(settings: Settings, host: str) -> None:
    """On an address others can reach, a stranger must not be able to join as an agent."""
    token = settings.agent_registration_token
    if is_loopback(host) or (token is not None and not _placeholder(token)):
        return
    err.print(
        f"[bold red]error:[/] serving on {host} lets other machines register agents; set "
        "AGENT_REGISTRATION_TOKEN (a long random secret agents must present, not the "
        "change-me placeholder of .env.example) or bind 127.0.0.1.",
        markup=True,
        highlight=False,
    )
    raise typer.Exit(2)


def refuse_open_cors(settings: Settings, require_auth: bool) -> None:
    """``ALLOWED_HOSTS=*`` grants every web site's pages the API; on a server that asks no
    token (loopback's default) any page the operator opens could start agents on their
    machine (ARCHITECTURE.md §4, CORS)."""
    if require_auth or "*" not in settings.allowed_origins:
        return
    err.print(
        "[bold red]error:[/] ALLOWED_HOSTS is '*', which lets any web site call this API from "
        "its visitors' browsers, and this server asks no operator token; list the origins of "
        "the pages that may call it (e.g. ALLOWED_HOSTS=https://orchestrator.example.com), or "
        "set AUTH_REQUIRED=true.",
        markup=True,
        highlight=False,
    )
    raise typer.Exit(2)


def refuse_unsafe_public_bind(settings: Settings, host: str) -> None:
    """On an address others can reach, the browser-facing defaults are not safe."""
    if is_loopback(host):
        return
    problems = []
    if "secret_key" not in settings.model_fields_set:
        # The key kept in ORCHESTRATOR_HOME serves one server well (SQLite allows no other),
        # but replicas of one PostgreSQL database on other machines would each make their
        # own, and refuse the agents' and the dashboard's tokens the others signed.
        if settings.database.get_backend_name() != "sqlite":
            problems.append(
                "SECRET_KEY is not set: on PostgreSQL, replicas on other machines would each "
                "sign with a key of their own (kept in their ORCHESTRATOR_HOME); set "
                "SECRET_KEY, the same on every replica, to a random secret of 32 characters "
                "or more, e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
    elif _placeholder(settings.secret_key):
        problems.append(
            "SECRET_KEY is still the change-me placeholder of .env.example; set it to a random "
            "secret of 32 characters or more, e.g. `python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'`"
        )
    if problems:
        err.print(
            f"[bold red]error:[/] refusing to serve on {host}:\n  " + "\n  ".join(problems),
            markup=True,
            highlight=False,
        )
        raise typer.Exit(2)


PLACEHOLDER_PREFIX = "change-me"
"""How .env.example's secrets begin: a server others can reach refuses to use them."""


def _placeholder(secret: SecretStr) -> bool:
    return secret.get_secret_value().lower().startswith(PLACEHOLDER_PREFIX)


def _claim_sqlite(database: Path) -> None:
    from ..bootstrap import AlreadyServed, claim_sqlite

    try:
        claim_sqlite(database)
    except AlreadyServed:
        err.print(
            f"[bold red]error:[/] another orchestrator is already serving {database}; "
            "SQLite allows one server process. Stop it, or set DB_HOST / DATABASE_URL to "
            "use PostgreSQL for several replicas.",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(1) from None


def serve(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Processes that serve HTTP and run the runtime side by side (PostgreSQL "
            "only) [default: the machine's cores on PostgreSQL, 1 on SQLite]",
            show_default=False,
        ),
    ] = None,
    runtime: Annotated[
        bool,
        typer.Option(
            "--runtime/--no-runtime",
            help="Run the runtime (sessions, internal agents, reaping, webhooks) here; "
            "--no-runtime serves HTTP only, for another process's `serve --no-http`",
        ),
    ] = True,
    http: Annotated[
        bool,
        typer.Option(
            "--http/--no-http",
            help="Serve the API and dashboard; --no-http runs the runtime alone (headless)",
        ),
    ] = True,
) -> None:
    """Apply migrations and serve the API and dashboard, and run the runtime."""
    import os

    import uvicorn

    from ..api.app import MAX_WEBSOCKET_FRAME_BYTES, create_app
    from ..logs import configure_logging
    from .collector_tuning import tune_collector
    from .serve_workers import WORKER_ENVIRONMENT

    settings = settings_or_exit()
    configure_logging(settings.log_level)
    sqlite = settings.database.get_backend_name() == "sqlite"
    processes = workers or (1 if sqlite else os.cpu_count() or 1)
    _refuse_split(sqlite=sqlite, runtime=runtime, http=http, workers=workers)
    if http:
        refuse_open_registration(settings, host)
        refuse_unsafe_public_bind(settings, host)
    require_auth = settings.auth_required or not is_loopback(host)
    if http:
        refuse_open_cors(settings, require_auth)
    if sqlite and settings.database.database:
        _claim_sqlite(Path(settings.database.database))
    settings = signing_settings_or_exit(settings)
    migrate_or_exit(settings)
    if not http:
        err.print(
            f"{settings.app_name} {__version__} running the runtime only (no HTTP) - "
            f"database {settings.database_display} - {_model_phrase(settings)}",
            highlight=False,
        )
        asyncio.run(run_headless(settings))
        return
    shown_host = f"[{host}]" if ":" in host else host
    err.print(
        f"{settings.app_name} {__version__} serving on http://{shown_host}:{port} "
        f"(dashboard /, API /api/v1, docs /docs) - database {settings.database_display}"
        + (f" - {processes} processes" if processes > 1 else "")
        + ("" if runtime else " - HTTP only (no runtime)")
        + (" - operator tokens required" if require_auth else "")
        + f" - {_model_phrase(settings)}",
        highlight=False,
    )
    if require_auth and not asyncio.run(_any_operator_token(settings)):
        err.print(
            "note: no operator token exists yet; make one with `orchestrator token create "
            "--name NAME --role operator` (it is shown once)",
            highlight=False,
        )
    served = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "server_header": False,
        "ws_max_size": MAX_WEBSOCKET_FRAME_BYTES,
    }
    if processes == 1:
        app = create_app(
            settings,
            migrate=False,
            require_auth=require_auth,
            trusted_hosts=trusted_hosts_for(settings, host),
            with_runtime=runtime,
        )
        tune_collector()
        uvicorn.run(app, **served)  # type: ignore[arg-type]
        return
    # Each process builds its own app (uvicorn spawns them); what this command decided
    # goes to them in the environment they inherit.
    os.environ.update(
        {
            WORKER_ENVIRONMENT["host"]: host,
            WORKER_ENVIRONMENT["require_auth"]: "1" if require_auth else "",
            WORKER_ENVIRONMENT["runtime"]: "1" if runtime else "",
            WORKER_ENVIRONMENT["parent"]: str(os.getpid()),
        }
    )
    uvicorn.run(
        "industrial_orchestrator.cli.serve_workers:app_from_environment",
        factory=True,
        workers=processes,
        **served,  # type: ignore[arg-type]
    )


def _refuse_split(*, sqlite: bool, runtime: bool, http: bool, workers: int | None) -> None:
    problem: str | None = None
    if not runtime and not http:
        problem = "--no-runtime with --no-http leaves nothing to run"
    elif sqlite and not (runtime and http):
        problem = (
            "SQLite is served by one process, which runs both HTTP and the runtime; drop "
            "--no-runtime / --no-http, or set DB_HOST / DATABASE_URL to use PostgreSQL"
        )
    elif sqlite and workers is not None and workers > 1:
        problem = (
            "SQLite is served by one process; --workers needs PostgreSQL (set DB_HOST / "
            "DATABASE_URL)"
        )
    elif not http and workers is not None and workers > 1:
        problem = (
            "--workers counts HTTP processes; for more runtime processes start `serve "
            "--no-http` several times"
        )
    if problem is not None:
        err.print(f"[bold red]error:[/] {problem}", markup=True, highlight=False)
        raise typer.Exit(2)


async def run_headless(settings: Settings) -> None:
    """The runtime without HTTP, until SIGTERM or SIGINT: built by the composition root,
    started, and stopped gracefully."""
    import signal

    from .. import bootstrap
    from ..shutdown import bounded
    from .collector_tuning import tune_collector

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    components = await bootstrap.build(settings, migrate=False)
    try:
        runtime = bootstrap.build_runtime(components)
        tune_collector()
        try:
            await runtime.start()
            await stop.wait()
        finally:
            await runtime.close()
    finally:
        await bounded("storage", components.close())


def _model_phrase(settings: Settings) -> str:
    from ..executors.opencode.model_setting import model_setting

    return model_setting(settings).summary


async def _any_operator_token(settings: Settings) -> bool:
    from .token_commands import token_service

    async with token_service(settings) as tokens:
        return any(token.active for token in await tokens.list())


def migrate() -> None:
    """Bring the database schema to the newest revision."""
    settings = settings_or_exit()
    migrate_or_exit(settings)
    err.print(f"database {settings.database_display} is at the newest schema", highlight=False)


def version() -> None:
    """Print the orchestrator's version."""
    typer.echo(__version__)
