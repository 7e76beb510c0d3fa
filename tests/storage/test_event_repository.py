"""Per-session sequence numbers: given at commit, once per session per transaction, in the
order the events were appended, around the numbers a session transition reserved."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from industrial_orchestrator.domain.events import EventType, NewEvent
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def line(session_id: UUID | None, text: str) -> NewEvent:
    return NewEvent(EventType.SESSION_LOG, NOW, session_id, {"text": text})


async def new_session(uow: SqlUnitOfWorkFactory) -> Session:
    session = Session(uuid4(), "t", "p", Priority.LOW, SessionState.PENDING, NOW, NOW)
    async with uow() as unit:
        await unit.sessions.add(session, None, None)
        await unit.commit()
    return session


async def stored(uow: SqlUnitOfWorkFactory, session_id: UUID) -> list[tuple[int, str]]:
    async with uow.reader() as unit:
        found = await unit.events.for_session(session_id, after_seq=0, limit=100)
    return [(event.seq or 0, event.payload["text"]) for event in found]


async def counter(uow: SqlUnitOfWorkFactory, session_id: UUID) -> int:
    async with uow.engine.connect() as connection:
        value = await connection.scalar(
            sa.text("SELECT event_seq FROM sessions WHERE id = :id"),
            {"id": session_id.hex if uow.engine.dialect.name == "sqlite" else session_id},
        )
    return int(value)


async def test_appends_of_one_transaction_take_consecutive_numbers_in_their_order(uow):
    first, second = await new_session(uow), await new_session(uow)
    async with uow() as unit:
        await unit.events.append([line(first.id, "a1"), line(second.id, "b1")])
        await unit.events.append([line(None, "global")])
        await unit.events.append([line(first.id, "a2"), line(first.id, "a3")])
        await unit.events.append([line(second.id, "b2")])
        await unit.commit()
    async with uow() as unit:
        await unit.events.append([line(first.id, "a4")])
        await unit.events.append([line(first.id, "a5")])
        await unit.commit()

    assert await stored(uow, first.id) == [(1, "a1"), (2, "a2"), (3, "a3"), (4, "a4"), (5, "a5")]
    assert await stored(uow, second.id) == [(1, "b1"), (2, "b2")]
    assert (await counter(uow, first.id), await counter(uow, second.id)) == (5, 2)
    # Global ids follow the order of the appends too.
    async with uow.reader() as unit:
        texts = [event.payload["text"] for event in await unit.events.after(0, limit=100)]
    assert texts == ["a1", "b1", "global", "a2", "a3", "b2", "a4", "a5"]


async def test_numbers_a_transition_reserved_keep_their_place_among_the_others(uow):
    session = await new_session(uow)
    async with uow() as unit:
        await unit.events.append([line(session.id, "before")])
        running = session.evolve(status=SessionState.RUNNING, version=session.version + 1)
        reserved = await unit.sessions.save(session, running, reserve_events=1)
        assert reserved is not None
        await unit.events.append([line(session.id, "transition")], reserved={session.id: reserved})
        await unit.events.append([line(session.id, "after")])
        await unit.commit()
    assert await stored(uow, session.id) == [(1, "before"), (2, "transition"), (3, "after")]
    assert await counter(uow, session.id) == 3

    # Only reserved numbers: no bump of the counter at all.
    async with uow() as unit:
        paused = running.evolve(status=SessionState.PAUSED, version=running.version + 1)
        reserved = await unit.sessions.save(running, paused, reserve_events=1)
        assert reserved is not None
        await unit.events.append([line(session.id, "paused")], reserved={session.id: reserved})
        await unit.commit()
    assert (await stored(uow, session.id))[-1] == (4, "paused")
    assert await counter(uow, session.id) == 4


async def test_a_transaction_that_does_not_commit_numbers_nothing(uow):
    session = await new_session(uow)
    async with uow() as unit:
        await unit.events.append([line(session.id, "lost")])
    async with uow() as unit:
        await unit.events.append([line(session.id, "kept")])
        await unit.commit()
    assert await stored(uow, session.id) == [(1, "kept")]
    assert await counter(uow, session.id) == 1


async def test_a_long_burst_is_stored_whole_and_in_order(uow):
    session = await new_session(uow)
    async with uow() as unit:
        await unit.events.append([line(session.id, f"l{n}") for n in range(150)])
        await unit.events.append([line(session.id, f"l{n}") for n in range(150, 250)])
        await unit.commit()
    async with uow.reader() as unit:
        found = await unit.events.for_session(session.id, after_seq=0, limit=1000)
    assert [(event.seq, event.payload["text"]) for event in found] == [
        (n + 1, f"l{n}") for n in range(250)
    ]
    assert [event.id for event in found] == sorted(event.id for event in found)
    assert await counter(uow, session.id) == 250


async def test_what_happened_since_a_place_in_the_log_comes_with_the_place_to_look_next(uow):
    session = await new_session(uow)
    async with uow.reader() as unit:
        start = await unit.events.last_id()
        assert await unit.events.touched(start, [EventType.TASK_TRANSITION]) == ([], start)
    moved = NewEvent(EventType.TASK_TRANSITION, NOW, session.id, {"to": "READY"})
    async with uow() as unit:
        await unit.events.append([moved, moved, line(session.id, "a log line")])
        await unit.commit()
    async with uow.reader() as unit:
        end = await unit.events.last_id()
        found, place = await unit.events.touched(start, [EventType.TASK_TRANSITION])
        # Once per kind of news; the place is past the log line too, never looked at again.
        assert (found, place) == ([(session.id, EventType.TASK_TRANSITION, "READY", None)], end)
        assert end == start + 3
        assert await unit.events.touched(place, [EventType.TASK_TRANSITION]) == ([], place)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_writer_whose_events_are_numbered_holds_back_the_next_until_it_commits(uow):
    """SQLite: one writer at a time, so a second writer waits for the first to commit
    (PostgreSQL's do not: the test below)."""
    first, second = await new_session(uow), await new_session(uow)
    async with uow() as early:
        await early.events.append([line(first.id, "early")])
        await early.events.flush()

        async def late() -> None:
            async with uow() as unit:
                await unit.events.append([line(second.id, "late")])
                await unit.commit()

        writing = asyncio.create_task(late())
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the numbered transaction to end
        await early.commit()
    await asyncio.wait_for(writing, 30)
    async with uow.reader() as unit:
        found = await unit.events.after(0, limit=100)
    assert [event.payload["text"] for event in found] == ["early", "late"]
    assert found[0].id < found[1].id


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_writers_commit_out_of_id_order_and_readers_by_id_skip_nothing(uow):
    """PostgreSQL: a writer that took the smaller ids and has not committed does not hold
    another writer up, but it holds the other's events back from readers by id (the
    watermark), so a reader that moves its cursor past what it was shown never skips the
    late commit; a reader that waits for writers gets both once the first commits."""
    first, second = await new_session(uow), await new_session(uow)
    async with uow.reader() as unit:
        start = await unit.events.last_id()
    async with uow() as early:
        await early.events.append([line(first.id, "early")])
        await early.events.flush()  # numbered and inserted: it holds the smaller id
        async with uow() as unit:  # not held up by the open transaction
            await unit.events.append([line(second.id, "late")])
            await asyncio.wait_for(unit.commit(), 10)
        async with uow.reader() as unit:
            assert await unit.events.after(start, limit=100) == []
            assert await unit.events.last_id() == start
            assert await unit.events.touched(start, [EventType.SESSION_LOG]) == ([], start)
        async with uow.engine.connect() as connection:  # the late one is committed
            committed = await connection.scalars(sa.text("SELECT payload->>'text' FROM events"))
            assert list(committed) == ["late"]

        async def wait_for_both() -> list[str]:
            async with uow.reader() as unit:
                found = await unit.events.after(start, limit=100, wait_for_writers=True)
            return [event.payload["text"] for event in found]

        waiting = asyncio.create_task(wait_for_both())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # waiting for the early writer to end
        await early.commit()
    assert await asyncio.wait_for(waiting, 10) == ["early", "late"]
    async with uow.reader() as unit:
        found = await unit.events.after(start, limit=100)
        touched, place = await unit.events.touched(start, [EventType.SESSION_LOG])
        end = await unit.events.last_id()
    assert [event.payload["text"] for event in found] == ["early", "late"]
    assert found[0].id < found[1].id
    assert {session_id for session_id, *_ in touched} == {first.id, second.id}
    assert place == end == found[1].id


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_writer_that_rolls_back_holds_nothing_back(uow):
    """PostgreSQL: the ids a rolled-back writer took are settled once it ends."""
    first, second = await new_session(uow), await new_session(uow)
    async with uow() as lost:
        await lost.events.append([line(first.id, "lost")])
        await lost.events.flush()
        async with uow() as unit:
            await unit.events.append([line(second.id, "kept")])
            await unit.commit()
        # Leaving without a commit rolls it back.
    async with uow.reader() as unit:
        found = await unit.events.after(0, limit=100)
        end = await unit.events.last_id()
    assert [event.payload["text"] for event in found][-1:] == ["kept"]
    assert "lost" not in [event.payload.get("text") for event in found]
    assert end == found[-1].id


async def test_a_writer_holding_the_session_row_is_not_stuck_behind_one_numbering_events(uow):
    """Every writer takes the session's row before the event-order lock (PostgreSQL's
    single statement too): one that holds the row since a transition and numbers its
    events last is not deadlocked by one that took the order lock and waits for the row."""
    session = await new_session(uow)
    async with uow() as holder:
        running = session.evolve(status=SessionState.RUNNING, version=session.version + 1)
        assert await holder.sessions.save(session, running) is not None

        async def other() -> None:
            async with uow() as unit:
                await unit.events.append([line(session.id, "other")])
                await unit.commit()

        writing = asyncio.create_task(other())
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the row
        await holder.events.append([line(session.id, "holder")])
        await holder.commit()
    await asyncio.wait_for(writing, 30)
    assert await stored(uow, session.id) == [(1, "holder"), (2, "other")]


async def test_events_of_a_session_that_is_not_stored_are_refused_whole(uow):
    stranger = uuid4()
    async with uow() as unit:
        await unit.events.append([line(stranger, "a"), line(stranger, "b")])
        with pytest.raises(LookupError):
            await unit.commit()
    async with uow.reader() as unit:
        assert await unit.events.after(0, limit=10) == []
