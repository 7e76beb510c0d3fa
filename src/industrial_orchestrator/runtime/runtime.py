"""The runtime: everything the orchestrator does without being asked by a request.

Session stepping with planning and verification (``SessionRunner``), the internal
agents' dispatch and their executor (OpenCode), reaping of expired leases and silent
agents with the recovery of unfinished effects (``Reaper``), and webhook delivery
(``WebhookDispatcher``). ``bootstrap.build_runtime`` wires it; whoever hosts it (the
HTTP server's lifespan, or ``orchestrator serve --no-http``) only starts and stops it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..executors.opencode.runtime import OpenCodeRuntime
from ..services.agents import AgentService
from ..shutdown import bounded
from .reaper import Reaper
from .session_runner import SessionRunner
from .webhooks import WebhookDispatcher


@dataclass(slots=True)
class Runtime:
    reaper: Reaper
    webhooks: WebhookDispatcher
    runner: SessionRunner | None
    """None when the session engine is off here (``ENGINE_ENABLED=false``)."""
    opencode: OpenCodeRuntime | None
    """The internal agents' OpenCode; None when no internal agent runs here."""
    agents: AgentService
    fleet_claim: int | None = None
    """The lock file this process holds while it drives the internal fleet."""

    async def start(self) -> None:
        if self.opencode is not None:
            await self.opencode.start(self.agents)
        try:
            await self.reaper.start()
            await self.webhooks.start()
            if self.runner is not None:
                await self.runner.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """The sessions first (their steps finish, the internal agents' tasks are
        aborted), then the loops that serve them, then OpenCode."""
        if self.runner is not None:
            await bounded("engine", self.runner.close())
        await bounded("reaper", self.reaper.close())
        await bounded("webhooks", self.webhooks.close())
        if self.opencode is not None:
            await bounded("opencode", self.opencode.close())
        if self.fleet_claim is not None:
            os.close(self.fleet_claim)
            self.fleet_claim = None
