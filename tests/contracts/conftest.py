"""The contract suite's one fixture: a unit of work factory of each backend, the
in-memory one, SQLite and PostgreSQL, so every case runs the same assertions on all three
(``-k memory`` picks the fast third)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from industrial_orchestrator.config import Settings
from industrial_orchestrator.domain.events import NewEvent
from industrial_orchestrator.services.ports import UnitOfWorkFactory
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The memory variants are part of the fast tier."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and "[memory" in item.name:
            item.add_marker(pytest.mark.fast)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Overrides the suite's two SQL backends with the memory one in front."""
    return str(request.param)


@pytest.fixture
def heard() -> list[NewEvent]:
    """What the factory's ``on_commit`` was told, in order."""
    return []


@pytest.fixture
def sql_settings(backend: str, request: pytest.FixtureRequest) -> Settings | None:
    """The SQL backends' settings (``tests/conftest.py``): asked for only by those, from a
    plain fixture (an async one cannot ask for another async one by name)."""
    if backend == "memory":
        return None
    settings: Settings = request.getfixturevalue("settings_for")
    return settings


@pytest.fixture
async def uow(
    sql_settings: Settings | None, heard: list[NewEvent]
) -> AsyncIterator[UnitOfWorkFactory]:
    def listen(events: Sequence[NewEvent]) -> None:
        heard.extend(events)

    if sql_settings is None:
        yield MemoryUnitOfWorkFactory(on_commit=listen)
        return
    # Imported here: the memory variants need no database driver at all.
    from industrial_orchestrator.storage.database import create_engine
    from industrial_orchestrator.storage.migrate import upgrade_to_head
    from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory

    engine = create_engine(sql_settings.database)
    await upgrade_to_head(engine)
    try:
        yield SqlUnitOfWorkFactory(engine, on_commit=listen)
    finally:
        await engine.dispose()
