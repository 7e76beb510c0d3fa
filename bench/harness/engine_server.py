"""A server with the engine on, on a database of its own: what most benchmarks start."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from harness.postgres import Postgres, temporary_database
from harness.redis import redis_env
from harness.server import running_server, server_env, temporary_workdir


@contextmanager
def engine_server(
    args: argparse.Namespace, purpose: str, *, workers: int, **settings: str
) -> Iterator[tuple[str, int, str]]:
    """``running_server`` with the engine on, on a fresh PostgreSQL database
    (``io_bench_<purpose>_<random>``, dropped on the way out) and Redis, from the script's
    ``--pg-*`` and ``--redis-port`` options, and ``settings`` beside: (base URL, pid of
    ``serve``, the database's URL)."""
    with ExitStack() as stack:
        workdir = stack.enter_context(temporary_workdir())
        pg = Postgres.from_args(args)
        database_url = pg.url(stack.enter_context(temporary_database(pg, purpose)))
        env = server_env(
            workdir / "home",
            DATABASE_URL=database_url,
            ENGINE_ENABLED="true",
            **redis_env(args.redis_port),
            **settings,
        )
        base_url, pid = stack.enter_context(running_server(env, workdir, workers=workers))
        yield base_url, pid, database_url
