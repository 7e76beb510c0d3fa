"""A reader tailing the log with ``id > last seen`` never skips an event that commits
after a later-numbered one: on PostgreSQL writers commit in any order and readers stop
at the watermark (``storage/event_repository.py``), whether they wait for the writers in
flight (the API's reads) or not (the runtime's and the event feed's)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from industrial_orchestrator.domain.events import LogStream
from industrial_orchestrator.services.sessions import NewSession

WRITERS = 12
LINES = 25


@pytest.mark.parametrize("wait_for_writers", [True, False])
async def test_a_tailing_reader_misses_no_event_of_concurrent_writers(
    app: FastAPI, wait_for_writers: bool
):
    components = app.state.components
    sessions = [
        (await components.sessions.create(NewSession(title=f"s{n}", initial_prompt="p"))).session
        for n in range(WRITERS)
    ]
    events = components.events
    start = await events.last_id()
    seen: list[int] = []
    writing = True

    async def tail() -> None:
        cursor = start
        while True:
            done = not writing
            found = await events.after(cursor, limit=1000, wait_for_writers=wait_for_writers)
            for event in found:
                seen.append(event.id)
                cursor = event.id
            if done:
                return

    async def write(session_id) -> None:
        for line in range(LINES):
            await events.append_log(session_id, LogStream.STDOUT, f"line {line}")

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(write(s.id) for s in sessions))
    writing = False
    await reader
    stored = [event.id for event in await events.after(start, limit=10_000)]
    assert len(stored) == WRITERS * LINES
    assert seen == stored
