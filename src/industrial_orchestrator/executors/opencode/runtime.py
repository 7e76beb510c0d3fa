"""Bring OpenCode up for this process: find or start the server, enlist the internal
fleet, and hand the dispatcher an executor."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from ...config import Settings
from ...domain.errors import ExecutorUnavailable
from ...domain.tasks.loop_guard import GuardPolicy
from ..base import TreeSnapshots
from .client import OpenCodeClient
from .executor import OpenCodeExecutor
from .fleet import FleetAgent, load_fleet
from .model_setting import model_setting
from .policy import OpenCodePolicy
from .server import (
    HOW_TO_CONFIGURE,
    ExternalServer,
    ManagedServer,
    MissingServer,
    OpenCodeServer,
    ServerSpec,
    find_binary,
)

log = structlog.get_logger("industrial_orchestrator.executors.opencode")


@dataclass(slots=True)
class OpenCodeRuntime:
    server: OpenCodeServer
    executor: OpenCodeExecutor
    fleet: list[FleetAgent]
    model: str | None

    async def start(self) -> None:
        """Start (or find) the server; the runtime then enlists the fleet."""
        await self.server.start()

    async def close(self) -> None:
        try:
            await self.executor.close()
        finally:
            await self.server.close()


def opencode_client(runtime: OpenCodeRuntime | None) -> OpenCodeClient:
    """The client of this process's OpenCode server; ``ExecutorUnavailable`` saying why
    there is none."""
    server = runtime.server if runtime is not None else None
    if server is None or server.client is None or server.reason:
        reason = server.reason if server is not None else "internal agents are disabled here"
        raise ExecutorUnavailable(f"OpenCode is unavailable: {reason}")
    return server.client


def server_for(settings: Settings) -> OpenCodeServer:
    if settings.opencode_host:
        return ExternalServer(
            f"http://{settings.opencode_host}:{settings.opencode_port}",
            settings.opencode_password.get_secret_value(),
            timeout_seconds=settings.opencode_timeout_seconds,
        )
    binary = find_binary(settings.opencode_bin)
    if binary is None:
        missing = (
            f"OPENCODE_BIN={settings.opencode_bin} is not an executable file"
            if settings.opencode_bin
            else "no OpenCode server is configured and no `opencode` binary is on PATH"
        )
        return MissingServer(f"{missing}: {HOW_TO_CONFIGURE}")
    env: dict[str, str] = {}
    if settings.opencode_config:
        env["OPENCODE_CONFIG_CONTENT"] = settings.opencode_config
    return ManagedServer(
        ServerSpec(binary=binary, home=settings.orchestrator_home / "opencode", env=env),
        timeout_seconds=settings.opencode_timeout_seconds,
    )


def build_opencode(
    settings: Settings,
    *,
    server: OpenCodeServer | None = None,
    trees: TreeSnapshots | None = None,
) -> OpenCodeRuntime:
    """The server (not started yet), the fleet and the executor the dispatcher drives.
    ``trees`` snapshots the sessions' working trees for the loop guard's roll-backs
    (without it, nothing is rolled back)."""
    fleet = load_fleet(settings.opencode_agents)
    server = server or server_for(settings)
    executor = OpenCodeExecutor(
        server,
        OpenCodePolicy(
            task_timeout_seconds=settings.task_timeout_seconds,
            poll_seconds=settings.opencode_poll_seconds,
            permission_policy=settings.permission_policy,
            default_model=settings.opencode_model,
            guard=GuardPolicy(
                repeat_limit=settings.guard_repeated_tool_calls,
                stall_steps=settings.guard_stall_steps,
                token_share=settings.guard_task_token_share,
            ),
            provider_retry_budget_seconds=settings.provider_retry_budget_seconds,
            unconfigured_fix=model_setting(settings).fix,
        ),
        trees,
    )
    return OpenCodeRuntime(server, executor, fleet, settings.opencode_model)
