"""What the model-based tests share: a migrated database of their own on each backend,
and the hypothesis settings they run with."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from industrial_orchestrator.config import load_settings
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import upgrade_to_head
from industrial_orchestrator.storage.tables import metadata

# Derandomized, so a run on this machine and one in CI walk the same steps.
MODEL_SETTINGS = hypothesis.settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


def connect(url: str) -> AsyncEngine:
    return create_engine(load_settings(database_url=url, _env_file=None).database)


async def empty(engine: AsyncEngine) -> None:
    """Every table emptied: each hypothesis example starts from nothing."""
    async with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(sa.delete(table))


def migrate(url: str) -> None:
    async def run() -> None:
        engine = connect(url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def backend_of(url: str) -> Any:
    return sa.engine.make_url(url).get_backend_name()
