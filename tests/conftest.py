from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import Settings, load_settings

from .backends import postgres_url_for, temporary_postgres_database, truncate_all

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """One PostgreSQL database for the whole run, emptied before each test that uses it."""
    with temporary_postgres_database() as name:
        yield name


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def settings_for(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Settings]:
    """Settings pointing at a clean database of the parametrised backend."""
    overrides: dict[str, object] = {"orchestrator_home": tmp_path / "home", "_env_file": None}
    if backend == "postgresql":
        database = request.getfixturevalue("postgres_database")
        await truncate_all(database)
        overrides["database_url"] = postgres_url_for(database)
    marker = request.node.get_closest_marker("settings")
    if marker is not None:
        overrides.update(marker.kwargs)
    yield load_settings(**overrides)


@pytest.fixture
async def client(settings_for: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real app (lifespan run: migrations applied, engine open)."""
    app = create_app(settings_for)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver"
        ) as http:
            yield http
