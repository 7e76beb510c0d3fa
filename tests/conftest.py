from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies import models as fastapi_dependencies
from hypothesis import settings as hypothesis_settings

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import Settings, load_settings
from industrial_orchestrator.services.sessions import SessionService
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import upgrade_to_head

from .backends import (
    REDIS_HOST,
    postgres_url_for,
    require_redis,
    run_sync,
    temporary_postgres_database,
    truncate_all,
)

BACKENDS = ["sqlite", "postgresql"]

# How fast an example runs is the benchmarks' business (bench/): with the suite on both
# cores, a pure property test's example was seen to pass the default 200 ms deadline.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """One PostgreSQL database for the whole run, emptied before each test that uses it."""
    with temporary_postgres_database() as name:
        yield name


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database the real migrations brought to head, once per run: each SQLite
    test starts from a copy (the app's own upgrade then finds nothing to do)."""
    path = tmp_path_factory.mktemp("migrated") / "orchestrator.db"

    async def migrate() -> None:
        settings = load_settings(orchestrator_home=path.parent, _env_file=None)
        engine = create_engine(settings.database)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()  # the last connection's close folds the WAL back in

    run_sync(migrate)
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def settings_for(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Settings]:
    """Settings pointing at a clean database of the parametrised backend."""
    overrides: dict[str, object] = {"orchestrator_home": tmp_path / "home", "_env_file": None}
    if backend == "sqlite":
        home = tmp_path / "home"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), home / "orchestrator.db")
    if backend == "postgresql":
        database = request.getfixturevalue("postgres_database")
        await truncate_all(database)
        overrides["database_url"] = postgres_url_for(database)
        # The production pairing: PostgreSQL with Redis (event bus, locks, agent cache),
        # under a prefix of this test's own.
        require_redis()
        overrides["redis_host"] = REDIS_HOST
        overrides["redis_prefix"] = f"test-{uuid4().hex}"
    # Tests drive sessions by hand; the engine would move them on behind their back.
    # Tests of the engine turn it on with @pytest.mark.settings(engine_enabled=True).
    overrides["engine_enabled"] = False
    # OpenCode's fleet only where a test asks for it (tests/integration).
    overrides["internal_agents"] = False
    overrides["workspace_roots"] = tempfile.gettempdir()
    marker = request.node.get_closest_marker("settings")
    if marker is not None:
        overrides.update(marker.kwargs)
    return load_settings(**overrides)


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """FastAPI remembers the endpoints and dependencies it has classified in module-level
    LRU caches (4,096 entries each). Every test's app defines closures of its own, so
    those caches kept hundreds of finished apps alive: about 4 million objects per
    worker by the end, seconds for each full garbage collection, and a worker whose last
    collection outlasted xdist's 5 s shutdown grace was sent SIGINT. Emptied after each
    test, they hold at most one test's app."""
    yield
    for name in dir(fastapi_dependencies):
        cache_clear = getattr(getattr(fastapi_dependencies, name), "cache_clear", None)
        if callable(cache_clear):
            cache_clear()


@pytest.fixture
async def app(settings_for: Settings) -> AsyncIterator[FastAPI]:
    """The real app with its lifespan running: migrations applied, engine open."""
    application = create_app(settings_for)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def service(app: FastAPI) -> SessionService:
    """The app's own session service, for system-only moves no HTTP verb makes."""
    sessions: SessionService = app.state.components.sessions
    return sessions
