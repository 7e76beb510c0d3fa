"""The ``orchestrator`` command.

``serve``, ``migrate``, ``version`` and ``token`` run the server on this machine (and
manage its operators' tokens), ``cluster`` several of them behind HAProxy; ``session ...`` is
a remote client of a running server, over its REST API and WebSocket streams only;
``worker`` joins a running server as an external agent that runs a command per task;
``demo`` runs a sample session through OpenCode with a scripted model, no API key needed;
``container`` holds the container image's start-up steps.
"""

from __future__ import annotations

import typer

from . import cluster, config_reference, demo, server_commands, worker
from .container import container_app
from .session_commands import session_app
from .token_commands import token_app

app = typer.Typer(
    name="orchestrator",
    help="Industrial Orchestrator: a control plane for autonomous AI coding agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(server_commands.serve)
app.command()(server_commands.migrate)
app.command()(server_commands.version)
app.command()(cluster.cluster)
app.add_typer(session_app)
app.add_typer(token_app)
app.add_typer(container_app)
app.command("worker")(worker.worker_command)
app.command("demo")(demo.demo_command)
app.command("config-reference")(config_reference.config_reference_command)

__all__ = ["app"]
