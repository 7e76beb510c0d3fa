"""Planner statistics for a new PostgreSQL database, before autovacuum's first visit.

PostgreSQL plans from the statistics ANALYZE gathers, and autovacuum runs it only when
it visits a database (every ``autovacuum_naptime``: a minute by default). A new
database that takes a fleet in its first minute has none, and its planner takes every
table for nearly empty: it planned a claim's look as a sort of every waiting task (3.2 ms
of PostgreSQL's CPU with 380 waiting, in ``bench/engine_sessions.py``) where the index
in claim order gives the first one in 0.03 ms once the table is analyzed. So a table of
ours that was never analyzed and already had ``ROWS_WORTH_ANALYZING`` rows written is
analyzed here, once; from then on autovacuum keeps its statistics, as everywhere.
"""

from __future__ import annotations

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from .database import is_sqlite
from .tables import metadata

log = structlog.get_logger("industrial_orchestrator.storage.planner_statistics")

ROWS_WORTH_ANALYZING = 500

_NEVER_ANALYZED = sa.text(
    "SELECT relname FROM pg_stat_user_tables "
    "WHERE schemaname = current_schema() AND relname IN :tables "
    "AND last_analyze IS NULL AND last_autoanalyze IS NULL "
    "AND n_mod_since_analyze >= :rows ORDER BY relname"
).bindparams(sa.bindparam("tables", expanding=True))


async def analyze_new_tables(engine: AsyncEngine) -> list[str]:
    """Analyze our tables that PostgreSQL never analyzed and that had enough rows written
    to be worth it; their names (none on SQLite, whose planner needs no statistics to
    use an index that gives the rows in the order asked)."""
    if is_sqlite(engine):
        return []
    async with engine.connect() as connection:
        found = await connection.execute(
            _NEVER_ANALYZED, {"tables": sorted(metadata.tables), "rows": ROWS_WORTH_ANALYZING}
        )
        names = [str(name) for name in found.scalars()]
        for name in names:
            # One of our own tables' names, as PostgreSQL lists them: quoted all the same.
            await connection.execute(sa.text(f'ANALYZE "{name}"'))
        await connection.commit()
    if names:
        log.info("planner_statistics_gathered", tables=names)
    return names
