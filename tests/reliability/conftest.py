"""Fixtures of the reliability suite."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..backends import postgres_url_for, temporary_postgres_database
from .model_databases import migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def model_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of the test's own, on SQLite and on PostgreSQL."""
    if request.param == "postgresql":
        with temporary_postgres_database("io_model") as name:
            url = postgres_url_for(name)
            migrate(url)
            yield url
        return
    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{Path(home) / 'orchestrator.db'}"
        migrate(url)
        yield url
