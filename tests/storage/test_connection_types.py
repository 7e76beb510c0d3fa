"""A PostgreSQL connection knows the array types our statements bind from the start
(``storage.array_codecs``): asyncpg looks each type it has no codec for up in the
catalogue, by a query PostgreSQL takes milliseconds to plan, once per connection and
type. The engine's first connection looks them up; the others are given what it read."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from industrial_orchestrator.config import load_settings
from industrial_orchestrator.storage.array_codecs import ARRAY_TYPE_IDS
from industrial_orchestrator.storage.database import create_engine

from ..backends import postgres_url_for, temporary_postgres_database

# asyncpg's catalogue look for types it has no codec for (``introspection.INTRO_LOOKUP_TYPES``).
_LOOK = "typeinfo_tree"


async def _known(connection: AsyncConnection) -> dict[str, bool]:
    raw = (await connection.get_raw_connection()).driver_connection
    codecs = raw._protocol.get_settings()
    return {name: codecs.get_data_codec(oid) is not None for name, oid in ARRAY_TYPE_IDS.items()}


async def _binds_arrays(connection: AsyncConnection) -> int:
    row = await connection.exec_driver_sql(
        "SELECT cardinality($1::uuid[]) + cardinality($2::int4[]) + cardinality($3::varchar[])",
        ([uuid4()], [1, 2], ["a"]),
    )
    return int(row.scalar_one())


def _counting_looks(engine: AsyncEngine) -> list[str]:
    looks: list[str] = []

    # Registered ahead of the engine's own listener: it sees every statement a new
    # connection runs, from its first.
    def count(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda logged: looks.append(logged.query) if _LOOK in logged.query else None
        )

    event.listen(engine.sync_engine, "connect", count, insert=True)
    return looks


async def test_every_connection_knows_the_arrays_we_bind_and_only_the_first_looks_them_up():
    with temporary_postgres_database("io_test_types") as name:
        engine = create_engine(load_settings(database_url=postgres_url_for(name)).database)
        looks = _counting_looks(engine)
        try:
            async with engine.connect() as first:
                known = [await _known(first)]
                # Two more, opened while the first is held: three connections in all.
                async with engine.connect() as second, engine.connect() as third:
                    known += [await _known(second), await _known(third)]
                    sums = await asyncio.gather(*(_binds_arrays(c) for c in (first, second, third)))
            await asyncio.sleep(0.05)  # query loggers are called soon after each query
        finally:
            await engine.dispose()
    assert known == [dict.fromkeys(ARRAY_TYPE_IDS, True)] * 3
    assert sums == [4, 4, 4]
    assert len(looks) == 1
