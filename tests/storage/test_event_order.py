"""Global event ids are handed out in commit order, so a reader tailing the log with
``id > last seen`` never skips an event that commits after a later-numbered one."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from industrial_orchestrator.domain.events import LogStream
from industrial_orchestrator.services.sessions import NewSession

WRITERS = 12
LINES = 25


async def test_a_tailing_reader_misses_no_event_of_concurrent_writers(app: FastAPI):
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
            for event in await events.after(cursor, limit=1000):
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
