"""A PostgreSQL connection knows the array types our statements bind from the start
(``storage.database.ARRAYS_BOUND``): asyncpg looks each type it has no codec for up in
the catalogue, by a query PostgreSQL takes milliseconds to plan, once per connection and
type; one look when the connection opens replaces one per type as statements first
bind it."""

from __future__ import annotations

from industrial_orchestrator.config import load_settings
from industrial_orchestrator.storage.database import create_engine

from ..backends import postgres_url_for, temporary_postgres_database

# The arrays our statements bind, by type id (asyncpg knows text[] without a look).
_BOUND = {"uuid[]": 2951, "varchar[]": 1015, "timestamptz[]": 1185, "int4[]": 1007}


async def test_a_new_connection_knows_every_array_our_statements_bind():
    with temporary_postgres_database("io_test_types") as name:
        engine = create_engine(load_settings(database_url=postgres_url_for(name)).database)
        try:
            async with engine.connect() as connection:
                raw = (await connection.get_raw_connection()).driver_connection
                codecs = raw._protocol.get_settings()
                known = {
                    type_name: codecs.get_data_codec(oid) is not None
                    for type_name, oid in _BOUND.items()
                }
        finally:
            await engine.dispose()
    assert known == dict.fromkeys(_BOUND, True)
