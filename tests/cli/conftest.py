"""One real ``orchestrator serve`` on SQLite for the CLI tests that do not restart it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..server_process import ServerProcess


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("cli-server")
    env = {"ORCHESTRATOR_HOME": str(root / "home"), "LOG_LEVEL": "WARNING"}
    with ServerProcess(env, root / "server") as running:
        running.start()
        yield running


@pytest.fixture
def url(server: ServerProcess) -> str:
    return server.base_url


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The CLI's cwd: an empty directory, so no stray ``.env`` is read."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path
