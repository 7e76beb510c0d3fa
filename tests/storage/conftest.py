"""What the storage tests share: a unit of work on a migrated database of the
parametrised backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import upgrade_to_head
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory


@pytest.fixture
async def uow(settings_for) -> AsyncIterator[SqlUnitOfWorkFactory]:
    engine = create_engine(settings_for.database)
    await upgrade_to_head(engine)
    try:
        yield SqlUnitOfWorkFactory(engine)
    finally:
        await engine.dispose()
