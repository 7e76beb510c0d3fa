"""The array types our statements bind, known to each PostgreSQL connection from the
start, looked up in the catalogue once per engine rather than once per connection.

asyncpg looks up in the catalogue each type it has no codec for, on each connection, by
a recursive query PostgreSQL takes 7-9 ms to plan (and two more statements around it to
turn JIT off and on). Statement by statement, that was two or three looks a connection
(89 in a 200-session run of the engine benchmark); one look as each connection opened
still cost every new backend that planning, a third of a second of PostgreSQL's CPU
in a 50-session run, all of it at the start. The types are PostgreSQL's own, with ids
fixed in its catalogue: what the first connection learned is true of every other one, so
the rows it read are handed to the next connections' codec tables as asyncpg itself
would after a look.

That hand-over goes through asyncpg internals (``Connection._introspect_types`` and the
protocol's ``register_data_types``). Where they are missing (another asyncpg), each
connection looks the types up itself, by preparing ``ARRAYS_BOUND``: slower, still right.
"""

from __future__ import annotations

from typing import Any

ARRAYS_BOUND = "SELECT $1::uuid[], $2::varchar[], $3::text[], $4::timestamptz[], $5::int4[]"
"""The array types our statements bind (``storage.listed``, the direct statements)."""

ARRAY_TYPE_IDS = {
    "uuid[]": 2951,
    "varchar[]": 1015,
    "text[]": 1009,
    "timestamptz[]": 1185,
    "int4[]": 1007,
}
"""The same types by their ids in PostgreSQL's catalogue (fixed since PostgreSQL 8)."""


class ArrayCodecs:
    """One engine's look-up of ``ARRAY_TYPE_IDS``: made by the first connection that opens,
    given to the others. Connections opening at once may each look: both rows are the
    same, the last kept."""

    def __init__(self) -> None:
        self._rows: Any = None

    async def teach(self, raw: Any) -> None:
        """Give the asyncpg connection ``raw`` the codecs of every type we bind."""
        try:
            introspect = raw._introspect_types
            settings = raw._protocol.get_settings()
        except AttributeError:
            await raw.prepare(ARRAYS_BOUND)
            return
        rows = self._rows
        if rows is None:
            rows, _statement = await introspect(list(ARRAY_TYPE_IDS.values()), None)
            self._rows = rows
        settings.register_data_types(rows)
