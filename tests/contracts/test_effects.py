"""The side-effect ledger: recorded once under its key, finished once, the pending ones
oldest first."""

from __future__ import annotations

import pytest

from industrial_orchestrator.domain.effects import EffectKind, EffectState, finished, pending_effect
from industrial_orchestrator.services.ports import UnitOfWorkFactory

from .builders import at, committed, session


async def test_record_once_finish_once(uow: UnitOfWorkFactory):
    owner = session(0)
    await committed(uow, owner)
    push = pending_effect("push:1", EffectKind.WORKSPACE_WRITE, now=at(1), session_id=owner.id)
    async with uow() as unit:
        assert await unit.effects.record(push) == (push, True)
        again = pending_effect("push:1", EffectKind.WORKSPACE_WRITE, now=at(9), detail={"x": 1})
        assert await unit.effects.record(again) == (push, False)
        await unit.commit()
    done = finished(push, at(2), {"sha": "abc"})
    async with uow() as unit:
        assert await unit.effects.finish(done)
        assert not await unit.effects.finish(done)
        assert not await unit.effects.finish(
            pending_effect("never", EffectKind.WORKSPACE_WRITE, now=at(0))
        )
        await unit.commit()
    async with uow.reader() as unit:
        stored = await unit.effects.get("push:1")
    assert stored == done
    assert stored is not None
    assert (stored.state, stored.detail) == (EffectState.DONE, {"sha": "abc"})


async def test_pending_oldest_first_and_by_session(uow: UnitOfWorkFactory):
    first, second = session(0), session(1)
    await committed(uow, first, second)
    write = EffectKind.WORKSPACE_WRITE
    made = [
        pending_effect("b", write, now=at(2), session_id=first.id),
        pending_effect("a", write, now=at(2), session_id=first.id),
        pending_effect("c", write, now=at(1), session_id=second.id),
        pending_effect("d", write, now=at(3)),
        pending_effect("e", write, now=at(4), session_id=first.id),
    ]
    other_kinds = [kind for kind in EffectKind if kind is not write]
    not_a_write = pending_effect("f", other_kinds[0], now=at(5), session_id=second.id)
    async with uow() as unit:
        for effect in [*made, not_a_write]:
            await unit.effects.record(effect)
        assert await unit.effects.finish(finished(made[4], at(6)))
        await unit.commit()
    async with uow.reader() as unit:
        effects = unit.effects
        assert [e.key for e in await effects.pending()] == ["c", "a", "b", "d", "f"]
        assert [e.key for e in await effects.pending(created_before=at(2))] == ["c", "a", "b"]
        assert [e.key for e in await effects.pending(session_id=second.id)] == ["c", "f"]
        assert [
            e.key for e in await effects.pending(session_id=first.id, created_before=at(2))
        ] == ["a", "b"]
        pages = await effects.of_session(first.id, offset=1, limit=5)
        assert ([e.key for e in pages[0]], pages[1]) == (["b", "e"], 3)
        assert await effects.sessions_with_pending_writes([first.id, second.id]) == {
            first.id,
            second.id,
        }
        assert await effects.sessions_with_pending_writes([]) == set()
    async with uow() as unit:
        for key in ("a", "b"):
            stored = await unit.effects.get(key)
            assert stored is not None
            assert await unit.effects.finish(finished(stored, at(7)))
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.effects.sessions_with_pending_writes([first.id, second.id]) == {second.id}


async def test_several_recorded_at_once_each_once_or_none(uow: UnitOfWorkFactory):
    """Several entries in one go (a checkpoint commit's): each new key inserted, a key
    taken gives the entry stored under it, a key given twice is new the first time; an
    entry the database refuses (its session does not exist) refuses them all, even with
    no transaction around them."""
    owner = session(0)
    await committed(uow, owner)
    write = EffectKind.WORKSPACE_WRITE
    taken = pending_effect("k:taken", write, now=at(1), session_id=owner.id, detail={"n": 0})
    async with uow() as unit:
        await unit.effects.record(taken)
        await unit.commit()
    first = pending_effect("k:1", write, now=at(2), session_id=owner.id, detail={"n": 1})
    again = pending_effect("k:taken", write, now=at(3), session_id=owner.id, detail={"n": 2})
    second = pending_effect("k:2", write, now=at(4), detail={"n": 3})
    twice = pending_effect("k:1", write, now=at(5), session_id=owner.id, detail={"n": 4})
    async with uow.single() as unit:
        recorded = await unit.effects.record_all([first, again, second, twice])
        await unit.commit()
    assert recorded == [(first, True), (taken, False), (second, True), (first, False)]
    refused = [
        pending_effect("k:3", write, now=at(6), session_id=owner.id),
        pending_effect("k:4", write, now=at(7), session_id=session(9).id),  # not stored
    ]

    async def record_refused() -> None:
        async with uow.single() as unit:
            await unit.effects.record_all(refused)
            await unit.commit()

    with pytest.raises(Exception, match=r"(?i)foreign key|unknown session"):
        await record_refused()
    async with uow.reader() as unit:
        assert await unit.effects.get("k:3") is None
        assert await unit.effects.get("k:1") == first
        assert await unit.effects.get("k:2") == second


async def test_recorded_at_once_unless_the_session_has_files_to_write(uow: UnitOfWorkFactory):
    """A checkpoint's promise waits while its session has files still to be written (its
    commit would lack them): nothing is recorded and the answer says so; another
    session's writes, or finished ones, do not hold it."""
    held, free = session(0), session(1)
    await committed(uow, held, free)
    commit = EffectKind.CHECKPOINT_COMMIT
    write = pending_effect("write:1", EffectKind.WORKSPACE_WRITE, now=at(1), session_id=held.id)
    taken = pending_effect("cp:taken", commit, now=at(1), session_id=held.id, detail={"n": 0})
    async with uow() as unit:
        await unit.effects.record_all([write, taken])
        await unit.commit()
    promises = [
        pending_effect(f"cp:{n}", commit, now=at(2), session_id=held.id, detail={"n": n})
        for n in (1, 2)
    ]
    for asked in (promises[:1], promises, [*promises, taken]):
        async with uow.single() as unit:
            assert await unit.effects.record_all(asked, unless_writes_pending=held.id) is None
            await unit.commit()
    async with uow.reader() as unit:
        assert [await unit.effects.get(p.key) for p in promises] == [None, None]
    theirs = pending_effect("cp:theirs", commit, now=at(3), session_id=free.id)
    async with uow.single() as unit:
        recorded = await unit.effects.record_all([theirs], unless_writes_pending=free.id)
        await unit.commit()
    assert recorded == [(theirs, True)]
    async with uow() as unit:
        assert await unit.effects.finish(finished(write, at(4)))
        await unit.commit()
    for asked, expected in (
        ([promises[0]], [(promises[0], True)]),
        (
            [promises[1], taken, promises[0]],
            [(promises[1], True), (taken, False), (promises[0], False)],
        ),
        ([taken], [(taken, False)]),
    ):
        async with uow.single() as unit:
            assert await unit.effects.record_all(asked, unless_writes_pending=held.id) == expected
            await unit.commit()
