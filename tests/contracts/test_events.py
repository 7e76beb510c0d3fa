"""The event log: per-session numbers given at commit, once per session per transaction,
in the order of the appends and around the numbers a session save reserved; global ids
in commit order; reads by number, by id, newest first, and what happened since a place."""

from __future__ import annotations

from uuid import UUID

from industrial_orchestrator.domain.events import EventType, NewEvent
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.ports import UnitOfWorkFactory

from .builders import NOW, committed, line, session


async def stored(uow: UnitOfWorkFactory, session_id: UUID) -> list[tuple[int, str]]:
    async with uow.reader() as unit:
        found = await unit.events.for_session(session_id, after_seq=0, limit=1000)
    return [(event.seq or 0, event.payload["text"]) for event in found]


async def counter(uow: UnitOfWorkFactory, current: Session) -> int:
    """The session's event counter, read through a save that reserves one number and is
    never committed."""
    async with uow() as unit:
        moved = current.evolve(version=current.version + 1)
        reserved = await unit.sessions.save(current, moved, reserve_events=1)
    assert reserved is not None
    return reserved - 1


async def test_numbers_per_session_in_append_order_across_transactions(uow: UnitOfWorkFactory):
    first, second = session(0), session(1)
    await committed(uow, first, second)
    async with uow() as unit:
        await unit.events.append([line(first.id, "a1"), line(second.id, "b1")])
        await unit.events.append([line(None, "global")])
        await unit.events.append([line(first.id, "a2"), line(first.id, "a3")])
        await unit.events.append([])
        await unit.events.append([line(second.id, "b2")])
        # Not numbered before the commit, not even for this transaction.
        assert await unit.events.for_session(first.id, after_seq=0, limit=10) == []
        await unit.commit()
    async with uow() as unit:
        await unit.events.append([line(first.id, "a4")])
        await unit.events.append([line(first.id, "a5")])
        await unit.commit()

    assert await stored(uow, first.id) == [(1, "a1"), (2, "a2"), (3, "a3"), (4, "a4"), (5, "a5")]
    assert await stored(uow, second.id) == [(1, "b1"), (2, "b2")]
    assert (await counter(uow, first), await counter(uow, second)) == (5, 2)
    async with uow.reader() as unit:
        log = await unit.events.after(0, limit=100)
    assert [event.payload["text"] for event in log] == [
        *["a1", "b1", "global", "a2", "a3", "b2", "a4", "a5"]
    ]
    assert [event.id for event in log] == sorted({event.id for event in log})
    assert log[2].session_id is None
    assert log[2].seq is None


async def test_numbers_a_save_reserved_keep_their_place(uow: UnitOfWorkFactory):
    current = session(0)
    await committed(uow, current)
    async with uow() as unit:
        await unit.events.append([line(current.id, "before")])
        running = current.evolve(status=SessionState.RUNNING, version=2)
        reserved = await unit.sessions.save(current, running, reserve_events=1)
        assert reserved == 1
        await unit.events.append([line(current.id, "transition")], reserved={current.id: 1})
        await unit.events.append([line(current.id, "after")])
        await unit.commit()
    assert await stored(uow, current.id) == [(1, "before"), (2, "transition"), (3, "after")]
    assert await counter(uow, running) == 3
    async with uow() as unit:  # only reserved numbers: the counter moves by those alone
        paused = running.evolve(status=SessionState.PAUSED, version=3)
        reserved = await unit.sessions.save(running, paused, reserve_events=2)
        assert reserved == 5
        await unit.events.append(
            [line(current.id, "paused"), line(current.id, "why")], reserved={current.id: 5}
        )
        await unit.commit()
    assert (await stored(uow, current.id))[-2:] == [(4, "paused"), (5, "why")]
    assert await counter(uow, paused) == 5


async def test_reads_by_number_by_id_and_newest_first(uow: UnitOfWorkFactory):
    first, second = session(0), session(1)
    await committed(uow, first, second)
    moved = NewEvent(EventType.TASK_TRANSITION, NOW, first.id, {"to": "READY"})
    async with uow() as unit:
        assert await unit.events.last_id() == 0
        await unit.events.append(
            [line(first.id, "1"), moved, line(None, "loose"), line(second.id, "2")]
        )
        await unit.events.append([line(first.id, "3"), moved])
        await unit.commit()
    async with uow.reader() as unit:
        events = unit.events
        last = await events.last_id()
        everything = await events.after(0, limit=100)
        assert len(everything) == 6
        assert everything[-1].id == last
        start = everything[0].id - 1
        of_first = await events.for_session(first.id, after_seq=0, limit=100)
        assert [event.seq for event in of_first] == [1, 2, 3, 4]
        assert await events.for_session(first.id, after_seq=1, limit=2) == of_first[1:3]
        assert await events.for_session(
            first.id, after_seq=0, limit=100, types=[EventType.TASK_TRANSITION]
        ) == [of_first[1], of_first[3]]
        assert await events.after(everything[1].id, limit=2) == everything[2:4]
        assert await events.after(start, limit=100, sessions_only=True) == [
            e for e in everything if e.session_id is not None
        ]
        assert await events.after(start, limit=100, types=[EventType.TASK_TRANSITION]) == [
            everything[1],
            everything[5],
        ]
        assert await events.after(last, limit=100) == []
        assert await events.latest(limit=3) == everything[:2:-1]
        assert await events.latest(limit=9, types=[EventType.TASK_TRANSITION]) == [
            everything[5],
            everything[1],
        ]


async def test_what_happened_since_a_place_in_the_log(uow: UnitOfWorkFactory):
    first, second = session(0), session(1)
    await committed(uow, first, second)
    async with uow.reader() as unit:
        start = await unit.events.last_id()
        assert await unit.events.touched(start, [EventType.TASK_TRANSITION]) == ([], start)
    moved = NewEvent(EventType.TASK_TRANSITION, NOW, first.id, {"to": "READY"})
    done = NewEvent(
        EventType.TASK_TRANSITION, NOW, first.id, {"from": "RUNNING", "to": "COMPLETED"}
    )
    other = NewEvent(EventType.TASK_TRANSITION, NOW, second.id, {"to": "READY"})
    shift = NewEvent(EventType.SESSION_TRANSITION, NOW, second.id, {"to": "RUNNING"})
    untyped = NewEvent(EventType.SESSION_TRANSITION, NOW, None, {})
    async with uow() as unit:
        await unit.events.append([moved, moved, other, done, line(first.id, "a log line")])
        await unit.events.append([shift, untyped, line(None, "last")])
        await unit.commit()
    async with uow.reader() as unit:
        end = await unit.events.last_id()
        found, place = await unit.events.touched(start, [EventType.TASK_TRANSITION])
        # Once per kind of news; the place is past the other events too.
        assert sorted(found, key=str) == sorted(
            [
                (first.id, EventType.TASK_TRANSITION, "READY", None),
                (first.id, EventType.TASK_TRANSITION, "COMPLETED", "RUNNING"),
                (second.id, EventType.TASK_TRANSITION, "READY", None),
            ],
            key=str,
        )
        assert (place, end) == (start + 8, start + 8)
        both, _ = await unit.events.touched(
            start + 3, [EventType.TASK_TRANSITION, EventType.SESSION_TRANSITION]
        )
        assert sorted(both, key=str) == sorted(
            [
                (first.id, EventType.TASK_TRANSITION, "COMPLETED", "RUNNING"),
                (second.id, EventType.SESSION_TRANSITION, "RUNNING", None),
                (None, EventType.SESSION_TRANSITION, None, None),
            ],
            key=str,
        )
        assert await unit.events.touched(place, [EventType.TASK_TRANSITION]) == ([], place)
        assert await unit.events.touched(start, []) == ([], end)
