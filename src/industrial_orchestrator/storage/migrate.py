"""Apply Alembic migrations on the running engine and tell whether the schema is current."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .database import WRITE_OPTION

MIGRATIONS = Path(__file__).parent / "migrations"
# Any 64-bit constant works; it only has to be the same in every replica.
_MIGRATION_LOCK_KEY = 7_305_118_042


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


async def upgrade_to_head(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (or ``revision``); safe when replicas
    start together."""

    def _upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        command.upgrade(_config(connection), revision)

    async with engine.connect() as connection:
        await connection.execution_options(**{WRITE_OPTION: True})
        async with connection.begin():
            await connection.run_sync(_upgrade)


async def downgrade_to(engine: AsyncEngine, revision: str) -> None:
    """Take the schema back to ``revision`` (the older migrations' ``downgrade``): what a
    database an older version left looks like, for the tests of the upgrade."""

    def _downgrade(connection: Connection) -> None:
        command.downgrade(_config(connection), revision)

    async with engine.connect() as connection:
        await connection.execution_options(**{WRITE_OPTION: True})
        async with connection.begin():
            await connection.run_sync(_downgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(_current)
