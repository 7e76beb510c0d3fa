"""The side-effect ledger (``services/effects.py``) on the in-memory unit of work and a
fake clock: an effect is begun once, finished once, and left to another process only
once the one that began it is known to be gone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from industrial_orchestrator.domain.effects import Effect, EffectKind, EffectState, pending_effect
from industrial_orchestrator.services.effects import EffectLedger, EffectRecovery
from industrial_orchestrator.testing.clock import FakeClock
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory

pytestmark = pytest.mark.fast

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def _ledger(
    uow: MemoryUnitOfWorkFactory, clock: FakeClock, owner: str, *, single_process: bool = False
) -> EffectLedger:
    return EffectLedger(
        uow, clock=clock, owner=owner, grace_seconds=60, single_process=single_process
    )


def _write(key: str, clock: FakeClock) -> Effect:
    return pending_effect(key, EffectKind.WORKSPACE_WRITE, now=clock())


async def test_an_effect_is_begun_once_and_finished_once():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    ledger = _ledger(uow, clock, "a")
    (first, new), (_, again) = await ledger.begin_all([_write("w:1", clock), _write("w:2", clock)])
    assert (new, again) == (True, True)
    assert first.detail["owner"] == "a"  # who is doing it
    repeated, fresh = await ledger.begin(_write("w:1", clock))
    assert (repeated.key, repeated.state, fresh) == ("w:1", EffectState.PENDING, False)
    assert await ledger.finish(first, {"written": ["x"]})
    assert not await ledger.finish(first, {"written": ["x"]})  # someone did it first
    done, _ = await ledger.begin(_write("w:1", clock))
    assert done.is_done


async def test_another_processs_effect_is_left_behind_only_after_the_grace():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    dead, alive = _ledger(uow, clock, "dead"), _ledger(uow, clock, "alive")
    await dead.begin(_write("w:1", clock))
    await alive.begin(_write("w:2", clock))
    clock.advance(30)
    assert await alive.left_behind() == []  # it may still be at work
    clock.advance(31)
    assert [e.key for e in await alive.left_behind()] == ["w:1"]  # never its own


async def test_with_one_process_an_earlier_ones_effect_is_left_behind_at_once():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    await _ledger(uow, clock, "before-the-restart").begin(_write("w:1", clock))
    restarted = _ledger(uow, clock, "now", single_process=True)
    assert [e.key for e in await restarted.left_behind()] == ["w:1"]


async def test_recovery_hands_each_effect_to_its_kinds_finisher():
    uow, clock = MemoryUnitOfWorkFactory(), FakeClock(T0)
    await _ledger(uow, clock, "dead").begin(_write("w:1", clock))
    await _ledger(uow, clock, "dead").begin(
        pending_effect("c:1", EffectKind.CHECKPOINT_COMMIT, now=clock())
    )
    ledger = _ledger(uow, clock, "alive", single_process=True)
    finished: list[str] = []

    async def write_again(effect: Effect) -> None:
        finished.append(effect.key)
        await ledger.finish(effect, {"written": []})

    recovery = EffectRecovery(ledger, {EffectKind.WORKSPACE_WRITE: write_again})
    assert await recovery.run_once() == 2  # both looked at
    assert finished == ["w:1"]  # only the kind it knows how to finish
    assert [e.key for e in await ledger.left_behind()] == ["c:1"]
