"""Checkpoints: the newest by number, pages newest first with the total, pruning."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

import pytest

from industrial_orchestrator.domain import events
from industrial_orchestrator.domain.effects import EffectKind, finished, pending_effect
from industrial_orchestrator.domain.events import EventType, NewEvent
from industrial_orchestrator.domain.sessions.checkpoint import Checkpoint
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState, is_terminal
from industrial_orchestrator.services.ports import UnitOfWorkFactory

from .builders import at, committed, session, task

CLOSED = [state for state in SessionState if is_terminal(state)]


async def test_add_latest_list_and_prune(uow: UnitOfWorkFactory):
    current, other = session(0), session(1)
    await committed(uow, current, other)
    made = [
        Checkpoint(uuid4(), current.id, seq, f"c{seq}", None, at(seq), {"seq": seq, "t": (1,)})
        for seq in (1, 2, 3, 4)
    ]
    theirs = Checkpoint(uuid4(), other.id, 9, "theirs", "why", at(9), {})
    async with uow() as unit:
        assert await unit.checkpoints.latest(current.id) is None
        assert await unit.checkpoints.list(current.id, 0, 10) == ([], 0)
        for checkpoint in [made[2], made[0], made[3], made[1], theirs]:
            await unit.checkpoints.add(checkpoint)
        await unit.commit()
    # Data comes back as JSON gives it (a tuple as a list).
    back = [replace(checkpoint, data={"seq": checkpoint.seq, "t": [1]}) for checkpoint in made]
    async with uow() as unit:
        checkpoints = unit.checkpoints
        assert await checkpoints.get(made[1].id) == back[1]
        assert await checkpoints.latest(current.id) == back[3]
        assert await checkpoints.latest(other.id) == theirs
        assert await checkpoints.list(current.id, 0, 10) == (back[::-1], 4)
        assert await checkpoints.list(current.id, 1, 2) == ([back[2], back[1]], 4)
        assert await checkpoints.list(current.id, 7, 2) == ([], 4)
        assert await checkpoints.prune(current.id, 3) == 2
        assert await checkpoints.prune(current.id, 3) == 0
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.checkpoints.list(current.id, 0, 10) == ([back[3], back[2]], 2)
        assert await unit.checkpoints.get(made[0].id) is None
        assert await unit.checkpoints.latest(other.id) == theirs


async def test_the_session_is_read_with_its_newest_checkpoint(uow: UnitOfWorkFactory):
    bare, kept = session(0), session(1)
    await committed(uow, bare, kept)
    made = [
        Checkpoint(uuid4(), kept.id, seq, f"c{seq}", "why", at(seq), {"seq": seq, "n": [seq]})
        for seq in (2, 7, 5)
    ]
    async with uow() as unit:
        for checkpoint in made:
            await unit.checkpoints.add(checkpoint)
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.checkpoints.latest_with_session(uuid4()) == (None, None)
        assert await unit.checkpoints.latest_with_session(bare.id) == (
            await unit.sessions.get(bare.id),
            None,
        )
        found, latest = await unit.checkpoints.latest_with_session(kept.id)
        assert found == await unit.sessions.get(kept.id)
        assert latest == made[1]


async def test_a_step_reads_the_session_its_newest_checkpoint_and_its_tasks_together(
    uow: UnitOfWorkFactory,
):
    bare, kept = session(0), session(1)
    first, second = task(1, kept.id), task(2, kept.id)
    await committed(uow, bare, kept, tasks=(second, first))
    newest = Checkpoint(uuid4(), kept.id, 3, "c3", "why", at(3), {"seq": 3})
    async with uow() as unit:
        await unit.checkpoints.add(Checkpoint(uuid4(), kept.id, 1, "c1", "why", at(1), {}))
        await unit.checkpoints.add(newest)
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.checkpoints.latest_with_plan(uuid4()) == (None, None, [])
        assert await unit.checkpoints.latest_with_plan(bare.id) == (
            await unit.sessions.get(bare.id),
            None,
            [],
        )
        assert await unit.checkpoints.latest_with_plan(kept.id) == (
            await unit.sessions.get(kept.id),
            newest,
            [first, second],
        )


async def test_a_commits_checkpoints_are_numbered_stored_and_their_entries_finished(
    uow: UnitOfWorkFactory,
):
    """One commit's checkpoints: the session's next numbers taken together, the rows as
    given, each ledger entry marked DONE as given; how many were marked (one finished
    elsewhere first counts out, and the caller's rollback undoes the rest); nothing at
    all for a session closed to checkpoints, and LookupError for none."""
    open_one, closed = session(0), session(1, status=SessionState.COMPLETED)
    await committed(uow, open_one, closed)
    commit = EffectKind.CHECKPOINT_COMMIT
    promised = [
        pending_effect(f"cp:{n}", commit, now=at(1), session_id=open_one.id) for n in (1, 2, 3)
    ]
    async with uow() as unit:
        await unit.effects.record_all(promised)
        assert await unit.sessions.next_checkpoint_seq(open_one.id) == 1
        await unit.commit()

    def drafts(owner: Session, *labels: str) -> list[Checkpoint]:
        return [
            Checkpoint(
                uuid4(), owner.id, 0, label, f"why {label}", at(5), {"label": label, "n": [1]}
            )
            for label in labels
        ]

    made = drafts(open_one, "a", "b")
    done = [
        finished(effect, at(6), {"checkpoint_id": str(c.id)})
        for effect, c in zip(promised[:2], made, strict=True)
    ]
    async with uow() as unit:
        added = await unit.checkpoints.add_numbered(open_one.id, made, done, unless_in=CLOSED)
        await unit.commit()
    assert added is not None
    stored, marked = added
    numbered = [replace(c, seq=seq, data={**c.data}) for c, seq in zip(made, (2, 3), strict=True)]
    assert (stored, marked) == (numbered, 2)
    async with uow.reader() as unit:
        assert await unit.checkpoints.list(open_one.id, 0, 10) == (numbered[::-1], 2)
        assert [await unit.effects.get(e.key) for e in done] == done
        assert await unit.effects.get("cp:3") == promised[2]
    # An entry someone else finished: counted out; rolled back, nothing stays.
    again = [finished(promised[2], at(7), {"n": 1}), done[0]]
    async with uow() as unit:
        added = await unit.checkpoints.add_numbered(
            open_one.id, drafts(open_one, "c", "d"), again, unless_in=CLOSED
        )
        assert added is not None
        assert [c.seq for c in added[0]] == [4, 5]
        assert added[1] == 1
    async with uow.reader() as unit:
        assert (await unit.checkpoints.list(open_one.id, 0, 10))[1] == 2
        assert await unit.effects.get("cp:3") == promised[2]
    # A session closed to checkpoints: nothing; an unknown one: LookupError.
    async with uow() as unit:
        late = [finished(promised[2], at(8), {"n": 2})]
        assert (
            await unit.checkpoints.add_numbered(
                closed.id, drafts(closed, "e"), late, unless_in=CLOSED
            )
            is None
        )
        with pytest.raises(LookupError):
            await unit.checkpoints.add_numbered(uuid4(), drafts(closed, "f"), [], unless_in=CLOSED)
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.checkpoints.list(closed.id, 0, 10) == ([], 0)
        assert await unit.effects.get("cp:3") == promised[2]
    # Without states to refuse, a closed session is numbered too (restoring it records).
    async with uow() as unit:
        added = await unit.checkpoints.add_numbered(closed.id, drafts(closed, "g"), [])
        await unit.commit()
    assert added is not None
    assert [c.seq for c in added[0]] == [1]


async def test_checkpoints_after_a_known_number_are_stored_with_their_events_or_not_at_all(
    uow: UnitOfWorkFactory,
):
    """``add_after``: the checkpoints numbered after the session's last one as the caller
    read it, with their events, and those beyond the retention pruned, in one unit of
    work without a transaction around it where the database can; nothing (False) when
    another checkpoint came first or the session is closed, None for no session."""
    open_one, closed = session(0), session(1, status=SessionState.COMPLETED)
    await committed(uow, open_one, closed)

    def numbered(owner: Session, first: int, *labels: str) -> list[Checkpoint]:
        return [
            Checkpoint(uuid4(), owner.id, seq, label, f"why {label}", at(seq), {"l": label})
            for seq, label in enumerate(labels, start=first)
        ]

    def created(made: list[Checkpoint]) -> list[NewEvent]:
        return [events.checkpoint_created(c) for c in made]

    async with uow() as unit:
        assert await unit.checkpoints.add_numbered(open_one.id, numbered(open_one, 0, "a"), [])
        await unit.commit()
    later = numbered(open_one, 2, "b", "c")
    async with uow.single() as unit:
        assert await unit.checkpoints.add_after(
            open_one.id, later, created(later), after_seq=1, keep_from=1, unless_in=CLOSED
        )
        await unit.commit()
    # Another step's checkpoint after number 1 (it read the session before this one):
    # refused, and its unit of work left without a commit keeps nothing.
    outrun = numbered(open_one, 2, "d")
    async with uow.single() as unit:
        refused = await unit.checkpoints.add_after(
            open_one.id, outrun, created(outrun), after_seq=1, keep_from=1, unless_in=CLOSED
        )
        assert refused is False
    late = numbered(closed, 1, "e")
    async with uow.single() as unit:
        assert (
            await unit.checkpoints.add_after(
                closed.id, late, created(late), after_seq=0, keep_from=1, unless_in=CLOSED
            )
            is False
        )
        nobody = [replace(late[0], session_id=uuid4())]
        assert (
            await unit.checkpoints.add_after(
                nobody[0].session_id, nobody, created(nobody), after_seq=0, keep_from=1
            )
            is None
        )
        with pytest.raises(ValueError, match="numbered"):
            await unit.checkpoints.add_after(
                open_one.id, later, created(later), after_seq=2, keep_from=1
            )
    # The next, with those before number 3 pruned in the same statement.
    last = numbered(open_one, 4, "f")
    async with uow.single() as unit:
        assert await unit.checkpoints.add_after(
            open_one.id, last, created(last), after_seq=3, keep_from=3, unless_in=CLOSED
        )
        await unit.commit()
    async with uow.reader() as unit:
        kept, total = await unit.checkpoints.list(open_one.id, 0, 10)
        assert [(c.seq, c.label) for c in kept] == [(4, "f"), (3, "c")]
        assert total == 2
        assert await unit.checkpoints.list(closed.id, 0, 10) == ([], 0)
        logged = await unit.events.for_session(open_one.id, after_seq=0, limit=10)
        assert await unit.sessions.next_checkpoint_seq(open_one.id) == 5
    # Numbered in the session's log one after another, as the caller made them.
    assert [(e.seq, e.type, e.payload["checkpoint_seq"]) for e in logged] == [
        (1, EventType.CHECKPOINT_CREATED, 2),
        (2, EventType.CHECKPOINT_CREATED, 3),
        (3, EventType.CHECKPOINT_CREATED, 4),
    ]
    assert [e.payload["label"] for e in logged] == ["b", "c", "f"]
