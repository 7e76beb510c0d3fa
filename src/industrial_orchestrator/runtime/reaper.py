"""The reaper: a background loop that takes back expired task leases and marks silent
agents OFFLINE (``TaskLeases.reap``), and finishes the effects a dead process left
unfinished (``EffectRecovery``; first at start, where a restart finds them); then the
composition root's ``maintenance``, if any (planner statistics for a new PostgreSQL
database: ``storage.planner_statistics``).

Every replica runs one. A shared lock lets one replica at a time do the round; the lock
only saves duplicated work (each step is a guarded database write), so when the lock
service is unreachable the round runs anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from ..coordination.locks import Lock, LockUnavailable
from ..services.effects import EffectRecovery
from ..services.task_leases import Reaped, TaskLeases
from .cancellation import stop_if_cancelled

log = structlog.get_logger("industrial_orchestrator.runtime.reaper")

LOCK_NAME = "reaper"


class Reaper:
    def __init__(
        self,
        leases: TaskLeases,
        lock: Lock,
        *,
        every_seconds: float,
        recovery: EffectRecovery | None = None,
        maintenance: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._leases = leases
        self._recovery = recovery
        self._maintenance = maintenance
        self._lock = lock
        self._every = every_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reaper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> Reaped | None:
        """One round, or None when another replica holds the round's lock."""
        token: str | None = None
        try:
            token = await self._lock.acquire(LOCK_NAME, self._every * 3)
            if token is None:
                return None
        except LockUnavailable:
            log.warning("reaper_lock_unavailable")
        try:
            reaped = await self._leases.reap()
            if self._recovery is not None:
                await self._recovery.run_once()
            if self._maintenance is not None:
                await self._maintenance()
            return reaped
        finally:
            if token is not None:
                with contextlib.suppress(LockUnavailable):
                    await self._lock.release(LOCK_NAME, token)

    async def _run(self) -> None:
        if self._recovery is not None:
            try:
                await self._recovery.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("effect_recovery_failed")
        while True:
            stop_if_cancelled()
            await asyncio.sleep(self._every)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next round tries again; never let the loop die
                stop_if_cancelled()
                log.exception("reaper_round_failed")
