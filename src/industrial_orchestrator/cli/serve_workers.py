"""The processes of ``orchestrator serve --workers N``.

uvicorn starts N processes on the one listening socket and restarts one that dies; each
builds its own app here, from what ``serve`` decided (passed in the environment they
inherit) and the same settings. They share nothing but the database (and Redis): a
session is stepped by the process holding its ownership lease, every change is a guarded
update, exactly as between replicas. The internal agents run in one of them (the first
to claim ``ORCHESTRATOR_HOME``'s fleet lock, ``bootstrap.build_runtime``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

from fastapi import FastAPI

WORKER_ENVIRONMENT = {
    "host": "ORCHESTRATOR_SERVE_HOST",
    "require_auth": "ORCHESTRATOR_SERVE_REQUIRE_AUTH",
    "runtime": "ORCHESTRATOR_SERVE_RUNTIME",
    "parent": "ORCHESTRATOR_SERVE_PARENT",
}
_PR_SET_PDEATHSIG = 1


def app_from_environment() -> FastAPI:
    from ..api.app import create_app
    from ..config import load_settings
    from ..kept_secrets import with_kept_secret_key
    from ..logs import configure_logging
    from .collector_tuning import tune_collector
    from .server_commands import trusted_hosts_for

    _die_with_parent(int(os.environ[WORKER_ENVIRONMENT["parent"]]))
    settings = with_kept_secret_key(load_settings())
    configure_logging(settings.log_level)
    host = os.environ[WORKER_ENVIRONMENT["host"]]
    app = create_app(
        settings,
        migrate=False,
        require_auth=bool(os.environ.get(WORKER_ENVIRONMENT["require_auth"])),
        trusted_hosts=trusted_hosts_for(settings, host),
        with_runtime=bool(os.environ.get(WORKER_ENVIRONMENT["runtime"])),
    )
    tune_collector()
    return app


def _die_with_parent(parent: int) -> None:
    """A ``serve`` killed outright (SIGKILL, a crash) takes its processes with it, as if
    it were one: none is left serving the port or driving sessions with nobody to stop
    it, and what a crash test kills is all of it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)
