"""The side-effect ledger (``domain.effects``) as the services use it, and the round that
finishes what a dead process left PENDING.

An entry records which process made it (``detail.owner``). A PENDING entry of this
process is an effect in progress; one of another process is left behind once that
process is known to be gone: at once when only one process serves the database (it is
this one), else when the entry is ``grace_seconds`` old, longer than any effect takes.

Failpoints (``FAILPOINTS``) kill the process at a named step, so tests can stop it
between recording an effect and marking it done, as a crash would: ``effects.recorded``
(before the effect) and ``effects.performed`` (after it), each optionally narrowed to a
kind, e.g. ``effects.performed:workspace.write``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID

import structlog

from ..domain.effects import Effect, EffectKind, finished
from .ports import Clock, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.effects")

Finisher = Callable[[Effect], Awaitable[None]]


class EffectLedger:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        owner: str,
        grace_seconds: float,
        single_process: bool,
        failpoints: Collection[str] = (),
    ) -> None:
        self._uow = uow
        self._clock = clock
        self.owner = owner
        self._grace = timedelta(seconds=grace_seconds)
        self._single_process = single_process
        self._failpoints = frozenset(failpoints)

    async def record_in(self, uow: UnitOfWork, effect: Effect) -> tuple[Effect, bool]:
        """Record ``effect``, naming this process as the one doing it, in the caller's
        transaction; the entry under its key, and whether it is new."""
        stamped = replace(effect, detail={**effect.detail, "owner": self.owner})
        return await uow.effects.record(stamped)

    async def begin(self, effect: Effect) -> tuple[Effect, bool]:
        """Record ``effect`` before doing it; the entry under its key, and whether it is
        new. One that is not may be DONE already (nothing to do) or PENDING from an
        earlier try (look for the evidence before doing it)."""
        begun = await self.begin_all([effect])
        assert begun is not None  # nothing asked it to wait
        (stored,) = begun
        return stored

    async def begin_all(
        self, effects: Sequence[Effect], *, unless_writes_pending: UUID | None = None
    ) -> list[tuple[Effect, bool]] | None:
        """``begin`` for several effects, all or none: one statement where the database
        allows (``EffectRepository.record_all``), so no transaction around it. With
        ``unless_writes_pending``: none, and None, while that session has files still to
        be written into its workspace."""
        stamped = [replace(e, detail={**e.detail, "owner": self.owner}) for e in effects]
        async with self._uow.single() as uow:
            stored = await uow.effects.record_all(
                stamped, unless_writes_pending=unless_writes_pending
            )
            await uow.commit()
        return stored

    async def finish_in(
        self,
        uow: UnitOfWork,
        effect: Effect,
        outcome: Mapping[str, Any] | None = None,
        *,
        drop: Collection[str] = (),
    ) -> bool:
        """Mark ``effect`` DONE in the caller's transaction; False when someone else did."""
        return await uow.effects.finish(
            finished(effect, self._clock(), dict(outcome or {}), drop=drop)
        )

    async def finish(
        self,
        effect: Effect,
        outcome: Mapping[str, Any] | None = None,
        *,
        drop: Collection[str] = (),
    ) -> bool:
        async with self._uow() as uow:
            done = await self.finish_in(uow, effect, outcome, drop=drop)
            await uow.commit()
        return done

    def reached(self, point: str, kind: EffectKind) -> None:
        """A failpoint: die here, as a crash would, when the settings ask for it."""
        if point in self._failpoints or f"{point}:{kind.value}" in self._failpoints:
            log.warning("failpoint_reached", point=point, kind=kind.value)
            os.kill(os.getpid(), signal.SIGKILL)

    async def left_behind(self) -> list[Effect]:
        """PENDING entries whose process is gone, oldest first."""
        now = self._clock()
        async with self._uow.reader() as uow:
            candidates = await uow.effects.pending(
                created_before=None if self._single_process else now - self._grace
            )
        return [e for e in candidates if e.detail.get("owner") != self.owner]

    async def of_session(
        self, session_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Effect], int]:
        async with self._uow.reader() as uow:
            return await uow.effects.of_session(session_id, offset=offset, limit=limit)


class EffectRecovery:
    """Finishes the effects dead processes left PENDING, each kind by its own finisher
    (which looks for the effect's evidence and does only what is missing)."""

    def __init__(self, ledger: EffectLedger, finishers: Mapping[EffectKind, Finisher]) -> None:
        self._ledger = ledger
        self._finishers = dict(finishers)

    async def run_once(self) -> int:
        """One round; how many entries were looked at."""
        left = await self._ledger.left_behind()
        for effect in left:
            finisher = self._finishers.get(effect.kind)
            if finisher is None:
                continue
            log.info(
                "effect_resumed",
                key=effect.key,
                kind=effect.kind.value,
                session_id=str(effect.session_id) if effect.session_id else None,
            )
            await finisher(effect)
        return len(left)
