"""``orchestrator worker``: the command that runs the reference external agent.

It only reads the options; the agent itself, an External Agent Protocol client written
for agent authors to read, is the ``eap_worker`` package next to this module.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .api_client import DEFAULT_URL, base_url
from .eap_worker.agent import serve
from .eap_worker.console import worker_console
from .eap_worker.settings import WorkerConfig, capabilities_for, orchestrator_home
from .errors import reported_errors
from .session_commands import Url


def worker_command(
    name: Annotated[
        str, typer.Option("--name", help="The agent's name, unique among the server's agents")
    ],
    command: Annotated[
        str,
        typer.Option(
            "--command",
            metavar="CMD",
            help="Shell command run for each task, in the task's workspace",
        ),
    ],
    capability: Annotated[
        list[str] | None,
        typer.Option(
            "--capability",
            metavar="CAP",
            help="A capability the agent offers (repeatable); it gets the tasks whose "
            "required capabilities it all holds",
        ),
    ] = None,
    any_capability: Annotated[
        bool,
        typer.Option(
            "--any-capability",
            help="Take every task (demos, tests): registers every capability this worker "
            "knows of (those of the planning templates and the task types). A task "
            "requiring a capability named nowhere else is still not taken: add it with "
            "--capability",
        ),
    ] = False,
    concurrency: Annotated[
        int, typer.Option(min=1, max=1000, help="Tasks run at the same time")
    ] = 1,
    agent_type: Annotated[str, typer.Option(help="The agent's type")] = "implementer",
    registration_token: Annotated[
        str | None,
        typer.Option(
            envvar="AGENT_REGISTRATION_TOKEN",
            show_envvar=True,
            help="The server's AGENT_REGISTRATION_TOKEN, when it has one",
        ),
    ] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Run a command for each task, as an external agent (EAP) of a running server.

    Registers, heartbeats and pulls tasks. Each task's command runs through the shell
    with the task's workspace as working directory (the workspace the task names, else
    $ORCHESTRATOR_HOME/worker/<task id>), the task's prompt on stdin and in
    ORCHESTRATOR_TASK_PROMPT, and ORCHESTRATOR_TASK_ID, ORCHESTRATOR_SESSION_ID,
    ORCHESTRATOR_TASK_TYPE, ORCHESTRATOR_TASK_TITLE and ORCHESTRATOR_TASK_ATTEMPT in its
    environment. Its output is printed and sent to the session's logs. Exit status 0
    completes the task and its last output line becomes the task's summary; anything else
    fails it with the output's tail as reason. The command may report its usage by
    writing {"tokens_used": N, "cost_usd": X} to $ORCHESTRATOR_USAGE_FILE (a file in a
    temporary directory of the task's own); it goes with the result. A command still
    running after the task's timeout is killed (its whole process group). Ctrl-C or
    SIGTERM: the running commands are killed and reported failed, the agent deregisters,
    exit 0.
    """
    capabilities = capabilities_for(capability or (), any_capability)
    console = worker_console()
    with reported_errors(console):
        config = WorkerConfig(
            url=base_url(url),
            name=name,
            command=command,
            capabilities=capabilities,
            any_capability=any_capability,
            agent_type=agent_type,
            concurrency=concurrency,
            registration_token=registration_token,
            home=orchestrator_home(),
        )
        asyncio.run(serve(config, console))
