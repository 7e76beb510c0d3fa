"""Sessions: guarded saves, keys that are unique, searches in their order, the
engine's ownership lease and timer, and the counters on the row."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest

from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Actor, Transition, WorktreeBinding
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.ports import (
    DuplicateKeyError,
    SessionQuery,
    UnitOfWorkFactory,
)

from .builders import at, committed, session

S = SessionState


async def test_a_guarded_save_refuses_a_stale_version_or_state(uow: UnitOfWorkFactory):
    stored = session(0)
    await committed(uow, stored)
    moved = stored.evolve(status=S.RUNNING, version=2, started_at=at(5))
    async with uow() as unit:
        assert await unit.sessions.save(stored.evolve(version=5), moved) is None
        assert await unit.sessions.save(stored.evolve(status=S.QUEUED), moved) is None
        assert await unit.sessions.save(session(1), moved) is None  # no such row
        assert await unit.sessions.save(stored, moved, reserve_events=2) == 2
        # The row moved on: the same save again finds it changed.
        assert await unit.sessions.save(stored, moved) is None
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.sessions.get(stored.id) == moved


async def test_a_save_that_changes_nothing_is_still_guarded(uow: UnitOfWorkFactory):
    stored = session(0)
    await committed(uow, stored)
    async with uow() as unit:
        assert await unit.sessions.save(stored, stored) == 0
        assert await unit.sessions.save(stored.evolve(version=5), stored) is None
        await unit.commit()


async def test_a_save_writes_only_what_changed(uow: UnitOfWorkFactory):
    """Usage added without a version survives a transition that did not change it."""
    stored = session(0)
    await committed(uow, stored)
    async with uow() as unit:
        await unit.sessions.add_usage(stored.id, 120, 0.25)
        await unit.sessions.add_usage(stored.id, 30, 0.5)
        await unit.commit()
    running = stored.evolve(status=S.RUNNING, version=2, title="renamed")
    async with uow() as unit:
        # With no numbers reserved, the counter as it is.
        assert await unit.sessions.save(stored, running) == 0
        await unit.commit()
    async with uow.reader() as unit:
        found = await unit.sessions.get(stored.id)
    assert found == running.evolve(tokens_used=150, cost_usd=0.75)


async def test_an_idempotency_key_and_a_retry_are_taken_once(uow: UnitOfWorkFactory):
    first, failed = session(0), session(1, status=S.FAILED)
    async with uow() as unit:
        await unit.sessions.add(first, "key-1", "hash-1")
        await unit.sessions.add(failed, None, None)
        await unit.commit()
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):
            await unit.sessions.add(session(2), "key-1", "hash-2")
    retry = session(3, retry_of=failed.id, attempt=2)
    async with uow() as unit:
        await unit.sessions.add(retry, None, None)
        await unit.commit()
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):
            await unit.sessions.add(session(4, retry_of=failed.id, attempt=2), None, None)
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):
            await unit.sessions.add(first, None, None)
    async with uow.reader() as unit:
        replay = await unit.sessions.get_by_idempotency_key("key-1")
        assert replay is not None
        assert (replay.session, replay.request_hash) == (first, "hash-1")
        assert await unit.sessions.get_by_idempotency_key("key-2") is None
        assert await unit.sessions.find_retry(failed.id) == retry
        assert await unit.sessions.find_retry(first.id) is None


async def test_search_filters_newest_first_with_the_total(uow: UnitOfWorkFactory):
    made = [
        session(0, status=S.RUNNING, priority=Priority.HIGH),
        session(1, title="Fix the Parser"),
        session(2, status=S.RUNNING),
        session(3, initial_prompt="the PARSER breaks"),
        session(4, status=S.COMPLETED, priority=Priority.HIGH),
    ]
    twin = session(4)  # same creation time as made[4]: ties go by id, descending
    await committed(uow, *made, twin)
    newest_first = [*sorted([made[4], twin], key=lambda s: s.id, reverse=True), *made[3::-1]]
    async with uow.reader() as unit:
        page, total = await unit.sessions.search(SessionQuery())
        assert (page, total) == (newest_first, 6)
        page, total = await unit.sessions.search(SessionQuery(offset=1, limit=2))
        assert (page, total) == (newest_first[1:3], 6)
        page, total = await unit.sessions.search(SessionQuery(offset=9))
        assert (page, total) == ([], 6)
        running = await unit.sessions.search(SessionQuery(statuses=[S.RUNNING]))
        assert running == ([made[2], made[0]], 2)
        high = await unit.sessions.search(
            SessionQuery(statuses=[S.RUNNING, S.COMPLETED], priorities=[Priority.HIGH])
        )
        assert high == ([made[4], made[0]], 2)
        parser = await unit.sessions.search(SessionQuery(text="pArSeR"))
        assert parser == ([made[3], made[1]], 2)
        assert await unit.sessions.search(SessionQuery(text="%")) == ([], 0)
        assert await unit.sessions.count_running() == 2


async def test_states_queues_and_totals(uow: UnitOfWorkFactory):
    low = session(0, status=S.QUEUED)
    high = session(1, status=S.QUEUED, priority=Priority.HIGH)
    later_high = session(2, status=S.QUEUED, priority=Priority.HIGH)
    done = session(
        3, status=S.COMPLETED, started_at=at(3), finished_at=at(13), tokens_used=5, cost_usd=1.5
    )
    done_too = session(4, status=S.FAILED, started_at=at(4), finished_at=at(34), tokens_used=7)
    async with uow.reader() as unit:
        assert await unit.sessions.next_queued() is None
        assert not await unit.sessions.anyone_queued()
        empty = await unit.sessions.totals()
    assert empty.by_state == {state: 0 for state in S}
    assert (empty.average_duration_seconds, empty.tokens_used, empty.cost_usd) == (None, 0, 0.0)
    await committed(uow, low, high, later_high, done, done_too)
    async with uow.reader() as unit:
        assert await unit.sessions.next_queued() == high
        assert await unit.sessions.anyone_queued()
        assert await unit.sessions.ids_in([S.QUEUED]) == [low.id, high.id, later_high.id]
        assert await unit.sessions.ids_in([S.COMPLETED, S.FAILED]) == [done.id, done_too.id]
        assert await unit.sessions.ids_in([]) == []
        totals = await unit.sessions.totals()
    assert totals.by_state == {
        **{state: 0 for state in S},
        S.QUEUED: 3,
        S.COMPLETED: 1,
        S.FAILED: 1,
    }
    assert totals.average_duration_seconds == pytest.approx(20.0)
    assert (totals.tokens_used, totals.cost_usd) == (12, pytest.approx(1.5))


async def test_the_ownership_lease_and_the_timer(uow: UnitOfWorkFactory):
    mine, theirs, stale = (session(n, status=S.RUNNING) for n in range(3))
    paused = session(3, status=S.PAUSED)
    await committed(uow, mine, theirs, stale, paused)
    async with uow() as unit:
        sessions = unit.sessions
        assert await sessions.own(mine.id, "a", at(0), at(60)) == "a"
        assert await sessions.own(theirs.id, "b", at(0), at(60)) == "b"
        assert await sessions.own(stale.id, "b", at(0), at(10)) == "b"
        assert await sessions.own(paused.id, "a", at(0), at(60)) == "a"
        assert await sessions.own(uuid4(), "a", at(0), at(60)) is None
        # Held by another until it runs out; then taken over, naming the one before.
        assert await sessions.own(theirs.id, "a", at(20), at(80)) is None
        assert await sessions.own(stale.id, "a", at(20), at(80)) == "b"
        assert await sessions.own(mine.id, "a", at(20), at(80)) == "a"  # renewed
        assert set(await sessions.unowned_in([S.RUNNING], at(70))) == {theirs.id}
        assert await sessions.unowned_in([S.RUNNING], at(50)) == []
        renewed = await sessions.renew_owned("a", [S.RUNNING], at(200))
        assert set(renewed) == {mine.id, stale.id}
        assert set(await sessions.unowned_in([S.RUNNING, S.PAUSED], at(150))) == {
            theirs.id,
            paused.id,
        }

        await sessions.set_next_due(mine.id, at(100))
        await sessions.set_next_due(stale.id, at(300))
        await sessions.set_next_due(theirs.id, at(100))
        await sessions.set_next_due(paused.id, at(100))
        assert await sessions.take_due("a", [S.RUNNING], at(99)) == []
        assert await sessions.take_due("a", [S.RUNNING], at(100)) == [mine.id]
        assert await sessions.take_due("a", [S.RUNNING], at(100)) == []  # taken once
        await sessions.set_next_due(stale.id, None)
        assert await sessions.take_due("a", [S.RUNNING], at(999)) == []

        assert await sessions.disown("a", paused.id) == 1
        assert await sessions.disown("a") == 2
        assert await sessions.disown("a") == 0
        assert await sessions.forget_owners() == 1
        assert await sessions.forget_owners() == 0
        assert set(await sessions.unowned_in([S.RUNNING], at(0))) == {
            mine.id,
            theirs.id,
            stale.id,
        }
        await unit.commit()


async def test_a_lease_is_kept_when_free_or_its_holders_never_taken_over(
    uow: UnitOfWorkFactory,
):
    free, theirs, stale = (session(n, status=S.RUNNING) for n in range(3))
    await committed(uow, free, theirs, stale)
    async with uow() as unit:
        assert await unit.sessions.own(theirs.id, "b", at(0), at(60)) == "b"
        assert await unit.sessions.own(stale.id, "b", at(0), at(10)) == "b"
        await unit.commit()
    async with uow.single() as unit:
        sessions = unit.sessions
        assert await sessions.keep(free.id, "a", at(20), at(60)) is True  # free: taken
        assert await sessions.keep(free.id, "a", at(20), at(90)) is True  # its own: renewed
        assert await sessions.keep(theirs.id, "a", at(20), at(90)) is False  # held by b
        # b's lease ran out: a take-over, left to ``own`` (it writes an event with it).
        assert await sessions.keep(stale.id, "a", at(20), at(90)) is None
        assert await sessions.keep(uuid4(), "a", at(20), at(90)) is False
        await unit.commit()
    async with uow.reader() as unit:
        # At 50 only b's lease that ran out at 10 is free: a's runs to 90, b's other to 60.
        assert await unit.sessions.unowned_in([S.RUNNING], at(50)) == [stale.id]
        assert set(await unit.sessions.unowned_in([S.RUNNING], at(95))) == {
            free.id,
            theirs.id,
            stale.id,
        }


async def test_a_working_tree_is_bound_once_and_found_by_workspace(uow: UnitOfWorkFactory):
    older = session(0, workspace="/repo")
    newer = session(1, workspace="/repo")
    unbound = session(2, workspace="/repo")
    elsewhere = session(3, workspace="/other")
    await committed(uow, older, newer, unbound, elsewhere)
    first = WorktreeBinding("/trees/a", "io/a", "c0ffee")
    async with uow() as unit:
        assert await unit.sessions.bind_worktree(older.id, first)
        assert not await unit.sessions.bind_worktree(older.id, WorktreeBinding("/x", "x", "x"))
        assert await unit.sessions.bind_worktree(newer.id, WorktreeBinding("/t/b", "io/b", "b"))
        assert await unit.sessions.bind_worktree(elsewhere.id, WorktreeBinding("/t/c", "c", "c"))
        assert not await unit.sessions.bind_worktree(uuid4(), first)
        # A save never writes the tree, whatever ``after`` says.
        moved = older.evolve(status=S.RUNNING, version=2, worktree=None)
        assert await unit.sessions.save(older, moved) == 0
        await unit.commit()
    async with uow.reader() as unit:
        found = await unit.sessions.get(older.id)
        assert found is not None
        assert found.worktree == first
        on_repo = await unit.sessions.on_workspace("/repo", limit=10)
        assert [each.id for each in on_repo] == [newer.id, older.id]
        assert [each.id for each in await unit.sessions.on_workspace("/repo", limit=1)] == [
            newer.id
        ]


async def test_history_forks_and_counters(uow: UnitOfWorkFactory):
    origin = session(0)
    late_fork, early_fork = session(2, forked_from=origin.id), session(1, forked_from=origin.id)
    await committed(uow, origin, late_fork, early_fork)
    records = [
        Transition(origin.id, seq, None, S.PENDING, f"r{seq}", Actor.SYSTEM, at(seq))
        for seq in (2, 1, 3)
    ]
    async with uow() as unit:
        for record in records:
            await unit.sessions.add_transition(record)
        assert await unit.sessions.next_checkpoint_seq(origin.id) == 1
        assert await unit.sessions.next_checkpoint_seq(origin.id) == 2
        # Three numbers at once (the checkpoints of one commit): 3, 4 and 5.
        assert await unit.sessions.next_checkpoint_seq(origin.id, count=3) == 3
        assert await unit.sessions.next_checkpoint_seq(origin.id) == 6
        assert await unit.sessions.next_checkpoint_seq(late_fork.id) == 1
        with pytest.raises(LookupError):
            await unit.sessions.next_checkpoint_seq(uuid4())
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.sessions.transitions(origin.id) == sorted(records, key=lambda r: r.seq)
        assert await unit.sessions.transitions(late_fork.id) == []
        assert await unit.sessions.forks_of(origin.id) == [early_fork.id, late_fork.id]
        assert await unit.sessions.forks_of(late_fork.id) == []


async def test_a_checkpoint_number_is_taken_only_outside_the_states_named(uow: UnitOfWorkFactory):
    open_, ended = session(0, status=S.RUNNING), session(1, status=S.FAILED)
    await committed(uow, open_, ended)
    closed = [S.FAILED, S.CANCELLED]
    async with uow() as unit:
        assert await unit.sessions.next_checkpoint_seq(open_.id, unless_in=closed) == 1
        assert await unit.sessions.next_checkpoint_seq(ended.id, unless_in=closed) is None
        # Nothing was taken: without the condition the ended one's first number is 1.
        assert await unit.sessions.next_checkpoint_seq(ended.id) == 1
        with pytest.raises(LookupError):
            await unit.sessions.next_checkpoint_seq(uuid4(), unless_in=closed)
        await unit.commit()


async def test_the_checkpoint_check_is_written_by_its_own_method_alone(uow: UnitOfWorkFactory):
    current = session(0, checkpoint_checked_at=at(1))
    await committed(uow, current)
    async with uow() as unit:
        found = await unit.sessions.get(current.id)
        assert found is not None
        assert found.checkpoint_checked_at is None  # not by ``add``
        await unit.sessions.checkpoint_checked(current.id, at(5))
        await unit.sessions.checkpoint_checked(uuid4(), at(5))
        moved = found.evolve(status=S.RUNNING, version=2, checkpoint_checked_at=at(9))
        assert await unit.sessions.save(found, moved) == 0  # nor by ``save``
        await unit.commit()
    async with uow.reader() as unit:
        found = await unit.sessions.get(current.id)
    assert found == moved.evolve(checkpoint_checked_at=at(5))


async def test_running_slots_are_taken_up_to_the_limit_and_given_back(uow: UnitOfWorkFactory):
    first, second, third = (session(n, status=S.PENDING) for n in range(3))
    await committed(uow, first, second, third)
    async with uow() as unit:
        # The slots are made as the first takers find them missing.
        assert await unit.sessions.take_running_slot(first.id, 2)
        assert not await unit.sessions.take_running_slot(first.id, 2), "one slot a session"
        assert await unit.sessions.take_running_slot(second.id, 2)
        assert not await unit.sessions.take_running_slot(third.id, 2), "the limit is 2"
        await unit.commit()
    async with uow() as unit:
        await unit.sessions.give_back_running_slot(first.id)
        await unit.sessions.give_back_running_slot(third.id)  # holds none: nothing happens
        assert await unit.sessions.take_running_slot(third.id, 2)
        await unit.commit()
    async with uow() as unit:
        # A take that is not committed holds nothing.
        await unit.sessions.give_back_running_slot(second.id)
        assert await unit.sessions.take_running_slot(first.id, 2)
    async with uow() as unit:
        assert not await unit.sessions.take_running_slot(first.id, 2)
        # A higher limit makes the slots it needs; a lower one takes effect once the
        # sessions in the slots above it are gone.
        assert await unit.sessions.take_running_slot(first.id, 3)
        assert not await unit.sessions.take_running_slot(session(9).id, 1)
        await unit.commit()
    async with uow() as unit:
        await unit.sessions.give_back_running_slot(second.id)
        await unit.sessions.give_back_running_slot(third.id)
        # Slots 1 and 2 are free, but the session in slot 3 still runs: at a limit of 2,
        # none may start until it is gone.
        assert not await unit.sessions.take_running_slot(second.id, 2)
        await unit.sessions.give_back_running_slot(first.id)
        assert await unit.sessions.take_running_slot(second.id, 2)
        assert await unit.sessions.take_running_slot(third.id, 2)
        assert not await unit.sessions.take_running_slot(first.id, 2)
        await unit.commit()


async def _take_alone(uow: UnitOfWorkFactory, session_id: UUID, capacity: int = 5) -> bool:
    async with uow() as unit:
        taken = await unit.sessions.take_running_slot(session_id, capacity)
        await unit.commit()
    return taken


async def test_a_second_taker_for_one_session_waits_and_finds_it_has_a_slot(
    uow: UnitOfWorkFactory,
):
    """Two starts of one session at once (a double click): the second waits for the
    first's transaction, then finds the session holds a slot, instead of taking another
    and breaking the one-slot-a-session rule with an error."""
    waiting, other = session(0, status=S.PENDING), session(1, status=S.PENDING)
    await committed(uow, waiting, other)
    assert await _take_alone(uow, other.id)  # the slots exist: the race is for a free one
    async with uow() as first:
        assert await first.sessions.take_running_slot(waiting.id, 5)
        second = asyncio.create_task(_take_alone(uow, waiting.id))
        await asyncio.sleep(0.2)
        assert not second.done(), "the second taker must wait for the first"
        await first.commit()
    assert await second is False


async def test_a_start_finds_a_slot_whenever_fewer_than_the_limit_are_held(
    uow: UnitOfWorkFactory,
):
    """Slots are made as starts first need them, each at a number picked at random among
    the missing ones. Picked by one guess, a number that existed already failed the take
    (four times in a row: 1-3 times in these 450 starts on PostgreSQL): a session queued
    with slots to spare, and the fleet's first sessions waited for a promotion."""
    capacity = 1000
    starting = [session(n, status=S.PENDING) for n in range(450)]
    await committed(uow, *starting)
    refused = []
    for each in starting:
        if not await _take_alone(uow, each.id, capacity):
            refused.append(each.id)
    assert refused == []
