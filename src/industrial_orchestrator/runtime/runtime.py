"""The runtime: everything the orchestrator does without being asked by a request.

Session stepping with planning and verification (``SessionRunner``), the internal
agents' dispatch (``Dispatcher``, a loop of its own) and their executor (OpenCode),
reaping of expired leases and silent agents with the recovery of unfinished effects
(``Reaper``), and webhook delivery (``WebhookDispatcher``). ``bootstrap.build_runtime``
wires it; whoever hosts it (the HTTP server's lifespan, or ``orchestrator serve
--no-http``) only starts and stops it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import structlog

from ..domain.errors import Conflict
from ..executors.opencode.runtime import OpenCodeRuntime
from ..services.agents import AgentService
from ..shutdown import bounded
from .dispatcher import Dispatcher
from .reaper import Reaper
from .session_runner import SessionRunner
from .webhooks import WebhookDispatcher

log = structlog.get_logger("industrial_orchestrator.runtime")


@dataclass(slots=True)
class Runtime:
    reaper: Reaper
    webhooks: WebhookDispatcher
    runner: SessionRunner | None
    """None when the session engine is off here (``ENGINE_ENABLED=false``)."""
    dispatcher: Dispatcher | None
    """The internal agents' dispatch; None when no internal agent runs here."""
    opencode: OpenCodeRuntime | None
    """The internal agents' OpenCode; None when no internal agent runs here."""
    agents: AgentService
    fleet_claim: int | None = None
    """The lock file this process holds while it drives the internal fleet."""

    async def start(self) -> None:
        """Start every part. Its host closes it whatever came of the start (``close``
        stops what started and lets go of what is held)."""
        if self.opencode is not None:
            await self.opencode.start()
            await self._enlist(self.opencode)
        await self.reaper.start()
        await self.webhooks.start()
        if self.runner is not None:
            await self.runner.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()

    async def _enlist(self, opencode: OpenCodeRuntime) -> None:
        """The internal fleet, registered (or refreshed, by name): HEALTHY when OpenCode
        answers, OFFLINE with the reason otherwise."""
        reason = opencode.server.reason
        for member in opencode.fleet:
            try:
                await self.agents.enlist(member.registration(opencode.model), offline_reason=reason)
            except Conflict as exc:  # an external agent has the name: it keeps it
                log.error("internal_agent_not_enlisted", name=member.name, reason=exc.message)
        log.info(
            "opencode_fleet",
            agents=[member.name for member in opencode.fleet],
            available=opencode.server.available,
            reason=reason,
        )

    async def close(self) -> None:
        """The internal agents' dispatch first (no more offers; their tasks in flight
        aborted), then the sessions (their steps finish), then the loops that serve
        them, then OpenCode."""
        if self.dispatcher is not None:
            await bounded("dispatcher", self.dispatcher.close())
        if self.runner is not None:
            await bounded("engine", self.runner.close())
        await bounded("reaper", self.reaper.close())
        await bounded("webhooks", self.webhooks.close())
        if self.opencode is not None:
            await bounded("opencode", self.opencode.close())
        if self.fleet_claim is not None:
            os.close(self.fleet_claim)
            self.fleet_claim = None
