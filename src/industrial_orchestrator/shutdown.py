"""Shutting down in bounded steps, for whatever hosts the orchestrator's parts."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("industrial_orchestrator.shutdown")

SHUTDOWN_STEP_SECONDS = 30.0


async def bounded(step: str, closing: Coroutine[Any, Any, None]) -> None:
    """One step of a shutdown, given ``SHUTDOWN_STEP_SECONDS``: a part that does not
    stop (a connection the network lost, say) must not keep the process from exiting;
    the log says which one it was."""
    try:
        async with asyncio.timeout(SHUTDOWN_STEP_SECONDS):
            await closing
    except TimeoutError:
        log.error("shutdown_step_timed_out", step=step, seconds=SHUTDOWN_STEP_SECONDS)
