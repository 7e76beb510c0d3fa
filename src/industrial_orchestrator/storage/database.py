"""Engine construction for both dialects.

SQLite runs in WAL mode with a busy timeout. Its write transactions start with
``BEGIN IMMEDIATE`` so that two writers queue on the lock instead of one failing with
SQLITE_BUSY when it upgrades a read snapshot; read-only units of work stay deferred.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from ..domain.storable_text import storable_json
from .array_codecs import ArrayCodecs

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "orchestrator_write"


DEFAULT_PLAN_CACHE_MODE = "force_generic_plan"
"""PostgreSQL plans each of our prepared statements once per connection. Its default
(``auto``) plans the first five runs of each statement on each connection for their
values, and goes on doing so for every run of a statement whose plan for any values looks
dearer: planning was 27 % of PostgreSQL's CPU in ``bench/engine_sessions.py``. Our
statements are written for one plan (``storage.written_constants``): the states they
filter on are in their text, the rest are keys."""


def create_engine(
    url: URL,
    *,
    pool_size: int = 20,
    echo: bool = False,
    plan_cache_mode: str = DEFAULT_PLAN_CACHE_MODE,
) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    engine = create_async_engine(
        url,
        echo=echo,
        json_serializer=storable_json_text,
        # Opened as load needs them, each kept once opened: a connection opened for a
        # burst and closed after it (SQLAlchemy's "overflow") cost PostgreSQL a new
        # backend and every statement prepared and planned again on it, 50 times in a
        # 16-second run of the engine benchmark.
        pool_size=pool_size,
        max_overflow=0,
        # The connection used last is used next: the few a steady load needs do the
        # work, warm (their statements prepared and planned), and the others, opened
        # for a burst, stay idle until the next one. First in, first out handed every
        # statement to every connection in turn, each preparing and planning it: 1,580-
        # 1,730 plans in a 50-session run of the engine benchmark, 1,280-1,330 so.
        pool_use_lifo=True,
        # No pre-ping: it costs three round trips per checkout. A connection found dead
        # is invalidated with the whole pool, and that one request is answered 503.
        pool_recycle=1800,
        # Sent with the connection's start-up message: no round trip of its own.
        connect_args={"server_settings": {"plan_cache_mode": plan_cache_mode}},
    )

    codecs = ArrayCodecs()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.run_async(codecs.teach)

    return engine


def storable_json_text(value: Any) -> str:
    """JSON column values as text, never holding what the database cannot keep or a
    reader cannot serve (``domain.storable_text``).

    The API refuses such text at the edge and internal writers clean what they take in;
    this is the net under both for JSON, where the harm is worst: PostgreSQL refuses
    ``\\u0000`` in jsonb, and SQLite keeps ``\\ud800``, which then breaks every read
    of the row. Text columns need no net to stay servable: a lone surrogate cannot even
    be encoded and PostgreSQL refuses a NUL, so such a write fails whole; SQLite keeps a
    NUL in text, which serves.
    """
    text = json.dumps(value)
    # Cheap test first: an escape is the only way either can appear in ASCII JSON text
    # (a surrogate pair is escaped too, hence the closer look).
    if "\\u0000" in text or "\\ud" in text:
        cleaned = storable_json(value)
        if cleaned is not value:
            text = json.dumps(cleaned)
    return text


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_engine(url: URL, *, echo: bool) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        echo=echo,
        json_serializer=storable_json_text,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control from the driver so BEGIN is ours to emit (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
