"""Tasks: guarded saves, dependency edges, pages in their order with the total, trees,
and the claimable ones, most urgent first, for what an agent can do."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.effects import EffectKind, finished, pending_effect
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.task import Task, TaskStatus
from industrial_orchestrator.services.ports import DuplicateKeyError, UnitOfWorkFactory

from .builders import agent, at, committed, session, task

T = TaskStatus


async def test_a_guarded_save_refuses_a_stale_version_or_status(uow: UnitOfWorkFactory):
    stored = task(0, None)
    await committed(uow, tasks=(stored,))
    ready = stored.evolve(status=T.READY, version=2, updated_at=at(5))
    async with uow() as unit:
        assert not await unit.tasks.save(stored.evolve(version=3), ready)
        assert not await unit.tasks.save(stored.evolve(status=T.READY), ready)
        assert not await unit.tasks.save(task(1, None), ready)  # no such row
        assert await unit.tasks.save(stored, ready)
        assert not await unit.tasks.save(stored, ready)  # it moved on
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.tasks.get(stored.id) == ready


async def test_a_save_that_changes_nothing_is_still_guarded(uow: UnitOfWorkFactory):
    stored = task(0, None)
    await committed(uow, tasks=(stored,))
    async with uow() as unit:
        assert await unit.tasks.save(stored, stored)
        assert not await unit.tasks.save(stored.evolve(version=3), stored)
        await unit.commit()


async def test_dependencies_are_edges_read_back_in_id_order(uow: UnitOfWorkFactory):
    owner = session(0)
    first, second = task(0, owner.id), task(1, owner.id)
    third = task(2, owner.id, depends_on=(second.id, first.id))
    await committed(uow, owner, tasks=(first, second, third))
    later = task(3, owner.id)
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):
            await unit.tasks.add_dependency(third.id, first.id)
    async with uow() as unit:
        await unit.tasks.add(later)
        await unit.tasks.add_dependency(later.id, third.id)
        await unit.tasks.add_dependency(later.id, first.id)
        # A save changes no edge, whatever ``after`` says.
        assert await unit.tasks.save(second, second.evolve(depends_on=(first.id,), version=2))
        await unit.commit()
    async with uow.reader() as unit:
        found = await unit.tasks.get(third.id)
        assert found is not None
        assert found.depends_on == tuple(sorted((first.id, second.id)))
        assert found == third
        found_later = await unit.tasks.get(later.id)
        assert found_later is not None
        assert found_later.depends_on == tuple(sorted((first.id, third.id)))
        found_second = await unit.tasks.get(second.id)
        assert found_second is not None
        assert found_second.depends_on == ()


async def test_a_plan_is_added_rows_first_then_every_edge(uow: UnitOfWorkFactory):
    owner = session(0)
    await committed(uow, owner)
    summary = task(0, owner.id)
    # The summary waits for its own children, which come after it (their parent).
    child = task(1, owner.id, parent_id=summary.id)
    later = task(2, owner.id, parent_id=summary.id, depends_on=(child.id,))
    summary = summary.evolve(depends_on=(child.id, later.id))
    async with uow() as unit:
        await unit.tasks.add_all([summary, child, later])
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.tasks.get_many([summary.id, child.id, later.id]) == [
            summary.evolve(depends_on=tuple(sorted((child.id, later.id)))),
            child,
            later,
        ]
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):
            await unit.tasks.add_all([task(3, owner.id, depends_on=(uuid4(),))])


@pytest.fixture
async def planned(uow: UnitOfWorkFactory) -> tuple[list[Task], list[Task]]:
    """Five tasks of a session (the third RUNNING, the last two under the first) and two
    of another session, added out of order."""
    owner, other = session(0), session(1)
    mine = [task(n, owner.id) for n in range(3)]
    mine += [task(n, owner.id, parent_id=mine[0].id) for n in (3, 4)]
    mine[2] = mine[2].evolve(status=T.RUNNING)
    theirs = [task(n, other.id, status=T.READY) for n in (0, 5)]
    await committed(
        uow,
        owner,
        other,
        tasks=(mine[0], theirs[1], mine[4], mine[1], mine[3], mine[2], *theirs[:1]),
    )
    return mine, theirs


@pytest.mark.parametrize(
    ("offset", "limit", "shown"),
    [(0, None, 5), (0, 10, 5), (0, 2, 2), (4, 2, 1), (2, None, 3), (9, 2, 0), (5, 2, 0)],
)
async def test_a_page_oldest_first_with_the_total(
    uow: UnitOfWorkFactory, planned: tuple[list[Task], list[Task]], offset, limit, shown
):
    mine, _ = planned
    session_id = mine[0].session_id
    async with uow.reader() as unit:
        page, total = await unit.tasks.search(
            session_id=session_id, parent_id=None, statuses=(), offset=offset, limit=limit
        )
    assert (page, total) == (mine[offset:][:shown], 5)


async def test_filters_and_lookups(uow: UnitOfWorkFactory, planned):
    mine, theirs = planned
    owner, other = mine[0].session_id, theirs[0].session_id
    assert owner is not None
    assert other is not None
    async with uow.reader() as unit:
        tasks = unit.tasks
        everything, total = await tasks.search(
            session_id=None, parent_id=None, statuses=(), offset=0, limit=None
        )
        assert total == 7
        assert everything == sorted([*mine, *theirs], key=lambda t: (t.created_at, t.id))
        assert await tasks.search(
            session_id=None, parent_id=None, statuses=[T.READY, T.RUNNING], offset=1, limit=1
        ) == ([mine[2]], 3)
        assert await tasks.search(
            session_id=owner, parent_id=mine[0].id, statuses=(), offset=0, limit=None
        ) == (mine[3:], 2)
        assert await tasks.of_session(owner) == mine
        assert await tasks.of_session(owner, [T.RUNNING, T.READY]) == [mine[2]]
        assert await tasks.of_session(uuid4()) == []
        assert set(await tasks.sessions_with_tasks_in([T.READY])) == {other}
        assert set(await tasks.sessions_with_tasks_in([T.READY, T.RUNNING])) == {owner, other}
        assert await tasks.sessions_with_tasks_in([T.FAILED]) == []
        running = [T.READY, T.RUNNING]
        assert await tasks.sessions_with_tasks_in(running, among=[owner, uuid4()]) == [owner]
        assert await tasks.sessions_with_tasks_in(running, among=[]) == []
        wanted = [mine[4].id, uuid4(), theirs[0].id, mine[0].id]
        assert await tasks.get_many(wanted) == [mine[4], theirs[0], mine[0]]
        assert await tasks.get_many([]) == []
        assert await tasks.family(mine[3]) == mine


async def test_trees_outside_any_session(uow: UnitOfWorkFactory):
    root = task(0, None)
    child = task(1, None, parent_id=root.id)
    grandchild = task(2, None, parent_id=child.id)
    sibling = task(3, None, parent_id=root.id)
    elsewhere = task(4, None)
    await committed(uow, tasks=(root, child, grandchild, sibling, elsewhere))
    async with uow.reader() as unit:
        tasks = unit.tasks
        assert await tasks.root_of(grandchild.id) == root.id
        assert await tasks.root_of(root.id) == root.id
        assert await tasks.subtree(root.id) == [root, child, grandchild, sibling]
        assert await tasks.subtree(child.id) == [child, grandchild]
        assert await tasks.subtree(uuid4()) == []
        assert await tasks.family(grandchild) == [root, child, grandchild, sibling]


async def test_a_result_learns_its_agent_with_the_tasks_session_as_it_locks(
    uow: UnitOfWorkFactory,
):
    owner = session(0)
    inside, outside = task(0, owner.id), task(1, None)
    await committed(uow, owner, tasks=(inside, outside))
    reporter = agent("reporter", ("python", "go"))
    async with uow() as unit:
        await unit.agents.add(reporter)
        await unit.commit()
    async with uow() as unit:
        found = unit.tasks.lock_session_family_for
        assert await found(inside.id, reporter.id) == (reporter, owner.id)
        assert await found(outside.id, reporter.id) == (reporter, None)
        assert await found(uuid4(), reporter.id) == (reporter, None)
        assert await found(inside.id, uuid4()) == (None, None)


async def test_claimable_most_urgent_first_for_what_the_agent_can_do(uow: UnitOfWorkFactory):
    low = session(0, status=SessionState.RUNNING)
    high = session(1, status=SessionState.DEGRADED, priority=Priority.HIGH)
    paused = session(2, status=SessionState.PAUSED, priority=Priority.CRITICAL)
    named = session(
        3,
        status=SessionState.RUNNING,
        priority=Priority.MEDIUM,
        options=SessionOptions(agents=("ada", "bob")),
    )
    ready = T.READY
    low_old = task(0, low.id, status=ready)
    low_new = task(5, low.id, status=ready)
    high_new = task(6, high.id, status=ready)
    high_old = task(1, high.id, status=ready)
    loose = task(2, None, status=ready)
    needs_more = task(3, low.id, capabilities=("python", "rust"), status=ready)
    needs_nothing = task(7, None, capabilities=(), status=ready)
    in_paused = task(0, paused.id, status=ready)
    not_ready = task(0, low.id)
    split = task(4, low.id, status=ready)  # has a subtask: its subtasks are the work
    subtask = task(8, low.id, parent_id=split.id, status=ready)
    for_named = task(9, named.id, status=ready)
    await committed(
        uow,
        low,
        high,
        paused,
        named,
        tasks=(
            low_new,
            high_new,
            loose,
            low_old,
            high_old,
            needs_more,
            needs_nothing,
            in_paused,
            not_ready,
            split,
            subtask,
            for_named,
        ),
    )
    async with uow() as unit:
        claimable = unit.tasks.claimable
        assert await claimable(["python", "go"], limit=20) == [
            high_old,
            high_new,
            for_named,
            low_old,
            low_new,
            subtask,
            loose,
            needs_nothing,
        ]
        assert await claimable(["python", "rust"], limit=5, lock=False) == [
            high_old,
            high_new,
            for_named,
            low_old,
            needs_more,
        ]
        assert await claimable([], limit=20) == [needs_nothing]
        for_ada = await claimable(["python"], limit=20, agent_name="ada")
        assert for_named in for_ada
        for_eve = await claimable(["python"], limit=20, agent_name="eve")
        assert for_eve == [high_old, high_new, low_old, low_new, subtask, loose, needs_nothing]

    # The same looks with the agent's record read in them: its capabilities and name.
    ada, rusty, eve = (
        agent("ada", ("python", "go")),
        agent("rusty", ("python", "rust")),
        agent("eve"),
    )
    async with uow() as unit:
        for each in (ada, rusty, eve):
            await unit.agents.add(each)
        await unit.commit()
    async with uow.reader() as unit:
        claimable_for = unit.tasks.claimable_for
        assert await claimable_for(ada.id, limit=20) == (
            ada,
            [high_old, high_new, for_named, low_old, low_new, subtask, loose, needs_nothing],
        )
        assert await claimable_for(rusty.id, limit=5) == (
            rusty,
            [high_old, high_new, low_old, needs_more, low_new],
        )
        assert await claimable_for(eve.id, limit=3) == (eve, [high_old, high_new, low_old])
        assert await claimable_for(eve.id, limit=0) == (eve, [])  # nothing found
        assert await claimable_for(uuid4(), limit=20) == (None, [])


async def test_a_session_with_files_still_to_be_written_offers_no_task(uow: UnitOfWorkFactory):
    writing, other = (
        session(0, status=SessionState.RUNNING),
        session(1, status=SessionState.RUNNING),
    )
    waiting, free = task(0, writing.id, status=T.READY), task(1, other.id, status=T.READY)
    await committed(uow, writing, other, tasks=(waiting, free))
    write = pending_effect("w", EffectKind.WORKSPACE_WRITE, now=at(2), session_id=writing.id)
    not_a_write = pending_effect(
        "x",
        next(k for k in EffectKind if k is not EffectKind.WORKSPACE_WRITE),
        now=at(2),
        session_id=other.id,
    )
    async with uow() as unit:
        await unit.effects.record(write)
        await unit.effects.record(not_a_write)
        await unit.commit()
    async with uow() as unit:
        assert await unit.tasks.claimable(["python"], limit=5) == [free]
        assert await unit.effects.finish(finished(write, at(3)))
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.tasks.claimable(["python"], limit=5, lock=False) == [waiting, free]


@pytest.mark.parametrize("backend", ["postgresql"])  # elsewhere writers take turns anyway
async def test_a_save_that_skips_locked_rows_does_not_wait_for_their_holder(
    uow: UnitOfWorkFactory,
):
    """A claim that loses the race for the task it looked at must not queue behind the
    winner's transaction: its save says False at once, and succeeds once the row is free
    (the holder rolled back) and still as it was read."""
    stored = task(0, None, status=T.READY)
    await committed(uow, tasks=(stored,))
    leased = stored.evolve(status=T.RUNNING, version=stored.version + 1, updated_at=at(5))
    async with uow() as holder:
        assert await holder.tasks.save(stored, leased)
        async with uow() as racer:
            skipped = await asyncio.wait_for(
                racer.tasks.save(stored, leased, skip_locked=True), timeout=5
            )
            assert skipped is False
        # No commit: the holder lets go of the row unchanged.
    async with uow() as racer:
        assert await racer.tasks.save(stored, leased, skip_locked=True)
        await racer.commit()
    async with uow.reader() as unit:
        assert await unit.tasks.get(stored.id) == leased


async def test_several_dependencies_are_added_at_once_or_not_at_all(uow: UnitOfWorkFactory):
    owner = session(0)
    first, second, third = (task(n, owner.id) for n in range(3))
    waiting = task(3, owner.id, depends_on=(first.id,))
    await committed(uow, owner, tasks=(first, second, third, waiting))
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):  # one edge of them exists already
            await unit.tasks.add_dependencies(waiting.id, [second.id, first.id])
    async with uow() as unit:
        await unit.tasks.add_dependencies(waiting.id, [third.id, second.id])
        await unit.tasks.add_dependencies(waiting.id, [])
        await unit.commit()
    async with uow.reader() as unit:
        found = await unit.tasks.get(waiting.id)
        assert found is not None
        assert found.depends_on == tuple(sorted((first.id, second.id, third.id)))


async def test_a_session_is_read_with_its_tasks_oldest_first(uow: UnitOfWorkFactory):
    owner, empty, other = session(0), session(1), session(2)
    later, first = task(5, owner.id), task(1, owner.id)
    waiting = task(6, owner.id, depends_on=(first.id, later.id))
    await committed(uow, owner, empty, other, tasks=(later, first, waiting, task(0, other.id)))
    async with uow.reader() as unit:
        stored = await unit.sessions.get(owner.id)
        assert await unit.tasks.with_session(owner.id) == (
            stored,
            await unit.tasks.of_session(owner.id),
        )
        found, tasks = await unit.tasks.with_session(owner.id)
        assert [t.id for t in tasks] == [first.id, later.id, waiting.id]
        assert tasks[-1].depends_on == tuple(sorted((first.id, later.id)))
        assert await unit.tasks.with_session(empty.id) == (await unit.sessions.get(empty.id), [])
        assert await unit.tasks.with_session(uuid4()) == (None, [])
    assert found is not None
    assert found.id == owner.id
