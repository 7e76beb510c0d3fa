"""Transactions: nothing is seen before ``commit()``, nothing kept without it, and
``on_commit`` hears of the events a commit stored."""

from __future__ import annotations

from uuid import uuid4

import pytest

from industrial_orchestrator.domain.effects import EffectKind, pending_effect
from industrial_orchestrator.domain.events import NewEvent
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.ports import UnitOfWorkFactory

from .builders import at, committed, line, session, task


async def test_leaving_without_commit_keeps_nothing(uow: UnitOfWorkFactory):
    kept = session(0)
    await committed(uow, kept)
    lost = session(1)
    async with uow() as unit:
        last = await unit.events.last_id()
        await unit.sessions.add(lost, None, None)
        await unit.tasks.add(task(1, kept.id))
        running = kept.evolve(status=SessionState.RUNNING, version=2)
        assert await unit.sessions.save(kept, running, reserve_events=1) == 1
        await unit.events.append([line(kept.id, "lost"), line(None, "lost too")])
        assert await unit.sessions.next_checkpoint_seq(kept.id) == 1
    async with uow.reader() as unit:
        assert await unit.sessions.get(lost.id) is None
        assert await unit.sessions.get(kept.id) == kept
        assert await unit.tasks.of_session(kept.id) == []
        assert await unit.events.last_id() == last
    async with uow() as unit:
        # The counters moved by the lost transaction did not move.
        assert await unit.sessions.next_checkpoint_seq(kept.id) == 1
        await unit.events.append([line(kept.id, "kept")])
        await unit.commit()
    async with uow.reader() as unit:
        found = await unit.events.for_session(kept.id, after_seq=0, limit=10)
    assert [(event.seq, event.payload) for event in found] == [(1, {"text": "kept"})]


async def test_an_error_inside_drops_the_transaction_and_goes_on_up(uow: UnitOfWorkFactory):
    lost = session(0)

    async def use_case() -> None:
        async with uow() as unit:
            await unit.sessions.add(lost, None, None)
            raise RuntimeError("use case failed")

    with pytest.raises(RuntimeError, match="use case failed"):
        await use_case()
    async with uow.reader() as unit:
        assert await unit.sessions.get(lost.id) is None


async def test_a_commit_begins_the_next_transaction(uow: UnitOfWorkFactory):
    first, second = session(0), session(1)
    async with uow() as unit:
        await unit.sessions.add(first, None, None)
        await unit.commit()
        await unit.sessions.add(second, None, None)
    async with uow.reader() as unit:
        assert await unit.sessions.get(first.id) == first
        assert await unit.sessions.get(second.id) is None


async def test_a_reader_sees_committed_state_only(uow: UnitOfWorkFactory):
    written = session(0)
    async with uow() as writer:
        await writer.sessions.add(written, None, None)
        assert await writer.sessions.get(written.id) == written  # its own writes
        async with uow.reader() as reader:
            assert await reader.sessions.get(written.id) is None
            assert await reader.sessions.ids_in([SessionState.PENDING]) == []
        await writer.commit()
    # A reader begun after the commit sees it. (One begun before may or may not: SQLite
    # reads one snapshot, PostgreSQL and memory readers the newest state at each read.)
    async with uow.reader() as reader:
        assert await reader.sessions.get(written.id) == written


async def test_on_commit_hears_what_each_commit_stored(
    uow: UnitOfWorkFactory, heard: list[NewEvent]
):
    first = session(0)
    await committed(uow, first)
    assert heard == []  # a commit without events tells nobody
    async with uow() as unit:
        await unit.events.append([line(first.id, "lost")])
    assert heard == []
    told = [line(first.id, "a"), line(None, "b")]
    async with uow() as unit:
        await unit.events.append(told[:1])
        await unit.events.append(told[1:])
        await unit.commit()
        assert heard == told
        await unit.events.append([line(first.id, "c")])
        await unit.commit()
    assert heard == [*told, line(first.id, "c")]


async def test_an_unknown_id_reads_as_nothing(uow: UnitOfWorkFactory):
    async with uow.reader() as unit:
        assert await unit.sessions.get(uuid4()) is None
        assert await unit.tasks.get(uuid4()) is None
        assert await unit.agents.get(uuid4()) is None
        assert await unit.checkpoints.get(uuid4()) is None
        assert await unit.contexts.get(uuid4()) is None
        assert await unit.webhooks.get(uuid4()) is None
        assert await unit.effects.get("no such key") is None
        assert await unit.attempts.get(uuid4(), 1) is None
        assert await unit.operator_tokens.by_name("nobody") is None


async def test_a_single_write_is_kept_and_read_back_and_refused_a_second_time(
    uow: UnitOfWorkFactory,
):
    """``single()``: one write that stands alone (on PostgreSQL without BEGIN and
    COMMIT), here the side-effect ledger's insert and the read of what refused it."""
    owner = session(0)
    await committed(uow, owner)
    push = pending_effect("push:1", EffectKind.WORKSPACE_WRITE, now=at(1), session_id=owner.id)
    async with uow.single() as unit:
        assert await unit.effects.record(push) == (push, True)
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.effects.get("push:1") == push
    again = pending_effect("push:1", EffectKind.WORKSPACE_WRITE, now=at(9), detail={"x": 1})
    async with uow.single() as unit:
        assert await unit.effects.record(again) == (push, False)
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.effects.pending() == [push]
