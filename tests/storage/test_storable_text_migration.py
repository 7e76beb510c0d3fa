"""A database that older versions let a NUL or a lone surrogate into serves again after the
upgrade (migration 0014): on SQLite the rows are repaired to U+FFFD; on PostgreSQL such
rows cannot exist, which is checked rather than assumed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import Settings
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import (
    current_revision,
    downgrade_to,
    head_revision,
    upgrade_to_head,
)

from ..api.helpers import API

SECRET = "test-secret-key-that-is-long-enough-0123456789"
EXTERNAL = f"{API}/agents/external"
MARK = "MARK"
BEFORE_REPAIR = "0013"
"""The revision before the repair (0014): an older version's schema, taken back to with the
migrations' own downgrades."""

pytestmark = pytest.mark.settings(secret_key=SECRET)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def _post(client: httpx.AsyncClient, url: str, body: Any, **kw: Any) -> Any:
    response = await client.post(url, json=body, **kw)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def _marked_rows(client: httpx.AsyncClient) -> None:
    """Rows with MARK where an older version could have let a bad code point in."""
    session = await _post(
        client,
        f"{API}/sessions",
        {
            "title": f"t{MARK}",
            "initial_prompt": "p",
            "metadata": {"k": f"{MARK}x", f"key{MARK}": {"deep": [MARK]}},
        },
    )
    await _post(client, f"{API}/sessions/{session['id']}/logs", {"stream": "stdout", "text": MARK})
    registered = await _post(
        client,
        f"{EXTERNAL}/register",
        {
            "protocol_version": "1.0",
            "name": "EXT-1",
            "agent_type": "implementer",
            "capabilities": ["code_generation"],
        },
    )
    agent = registered["agent_id"]
    await _post(
        client,
        f"{EXTERNAL}/{agent}/heartbeat",
        {"status": "healthy", "metrics": {"k": f"{MARK}x"}},
        headers={"Authorization": f"Bearer {registered['auth_token']}", "X-Agent-ID": agent},
    )


async def _served(client: httpx.AsyncClient) -> dict[str, Any]:
    """What the measured failures were: lists, an agent, routing; all must answer."""
    answers: dict[str, Any] = {}
    for url in [f"{API}/sessions", f"{API}/agents", f"{API}/events?limit=1000"]:
        response = await client.get(url)
        assert response.status_code == 200, (url, response.text)
        answers[url] = response.json()
    agent = _items(answers[f"{API}/agents"])[0]["id"]
    one = await client.get(f"{API}/agents/{agent}")
    assert one.status_code == 200, one.text
    route = await client.post(
        f"{API}/agents/route", json={"required_capabilities": ["code_generation"]}
    )
    assert route.status_code == 200, route.text
    return answers


def _items(answer: Any) -> list[Any]:
    # The agent list is a page now (it was a bare list): take either.
    return list(answer["items"] if isinstance(answer, dict) else answer)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_sqlite_database_poisoned_by_an_older_version_serves_after_the_upgrade(
    settings_for: Settings,
) -> None:
    async with running(settings_for) as client:
        await _marked_rows(client)
    database = settings_for.database.database
    assert database is not None
    # What an older version stored: JSON escapes that decode to a lone surrogate or a
    # NUL, and a raw NUL in TEXT; then the schema as it was before the repair.
    with sqlite3.connect(database) as raw:
        raw.execute(
            "UPDATE sessions SET title = replace(title, ?, char(0)), "
            "metadata = replace(metadata, ?, ?)",
            (MARK, MARK, "\\ud800"),
        )
        raw.execute("UPDATE agents SET metadata = replace(metadata, ?, ?)", (MARK, "\\udfff"))
        raw.execute("UPDATE events SET payload = replace(payload, ?, ?)", (MARK, "\\u0000"))
    with sqlite3.connect(database) as raw:
        stored = json.loads(raw.execute("SELECT metadata FROM sessions").fetchone()[0])
    assert stored["k"] == "\ud800x"  # the poison is in place: this is what broke reads

    engine = create_engine(settings_for.database)
    try:
        await downgrade_to(engine, BEFORE_REPAIR)
        await upgrade_to_head(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()

    async with running(settings_for) as client:
        answers = await _served(client)
    session = answers[f"{API}/sessions"]["items"][0]
    assert session["title"] == "t\ufffd"
    assert session["metadata"] == {"k": "\ufffdx", "key\ufffd": {"deep": ["\ufffd"]}}
    agent = _items(answers[f"{API}/agents"])[0]
    assert agent["metadata"]["metrics"] == {"k": "\ufffdx"}
    logs = [e for e in answers[f"{API}/events?limit=1000"]["items"] if e["type"] == "session.log"]
    assert [e["payload"]["text"] for e in logs] == ["\ufffd"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_repair_leaves_good_rows_and_valid_surrogate_pairs_alone(
    settings_for: Settings,
) -> None:
    async with running(settings_for) as client:
        await _post(
            client,
            f"{API}/sessions",
            {"title": "emoji \U0001f600", "initial_prompt": "p", "metadata": {"e": "\U0001f600 é"}},
        )
    database = settings_for.database.database
    assert database is not None
    with sqlite3.connect(database) as raw:
        before = raw.execute("SELECT * FROM sessions").fetchall()
    engine = create_engine(settings_for.database)
    try:
        await downgrade_to(engine, BEFORE_REPAIR)
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    with sqlite3.connect(database) as raw:
        assert raw.execute("SELECT * FROM sessions").fetchall() == before


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_postgresql_cannot_hold_such_rows_so_its_upgrade_has_nothing_to_repair(
    settings_for: Settings,
) -> None:
    async with running(settings_for) as client:
        await _marked_rows(client)
    engine = create_engine(settings_for.database)
    try:
        async with engine.connect() as connection:
            kinds = await connection.run_sync(
                lambda sync: {
                    (table, column["name"]): type(column["type"]).__name__
                    for table in sa.inspect(sync).get_table_names()
                    for column in sa.inspect(sync).get_columns(table)
                }
            )
            await connection.rollback()  # end the reflection's own transaction
            # Plain json would keep \u0000 and \ud800 escapes; jsonb refuses both.
            assert "JSON" not in kinds.values()
            assert kinds[("sessions", "metadata")] == "JSONB"
            for statement, value in [
                ("UPDATE sessions SET metadata = CAST(:v AS jsonb)", '{"k": "\\ud800"}'),
                ("UPDATE sessions SET metadata = CAST(:v AS jsonb)", '{"k": "\\u0000"}'),
                ("UPDATE sessions SET title = :v", "a\x00b"),
            ]:
                with pytest.raises(sa.exc.DBAPIError):
                    async with connection.begin():
                        await connection.execute(sa.text(statement), {"v": value})
        await downgrade_to(engine, BEFORE_REPAIR)
        await upgrade_to_head(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()
    async with running(settings_for) as client:
        answers = await _served(client)
    assert answers[f"{API}/sessions"]["items"][0]["title"] == f"t{MARK}"
