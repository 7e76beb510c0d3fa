"""PostgreSQL for a benchmark: a fresh database per run, created through an existing
admin database and dropped on the way out, so a run never sees another's rows and leaves
nothing behind (also on failure or Ctrl-C)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg

from harness.main import BenchError
from harness.server import LOOPBACK, PREFIX


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    admin_db: str

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Postgres:
        """From the options ``add_postgres_args`` adds."""
        return cls(port=args.pg_port, user=args.pg_user, admin_db=args.pg_admin_db)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def cli_args(self) -> list[str]:
        return ["-h", LOOPBACK, "-p", str(self.port), "-U", self.user]


def add_postgres_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL port on 127.0.0.1")
    parser.add_argument("--pg-user", default="postgres", help="PostgreSQL role (trust auth)")
    parser.add_argument(
        "--pg-admin-db", default="test", help="existing database to connect to for CREATE DATABASE"
    )


async def admin(pg: Postgres, *statements: str) -> None:
    """Run ``statements`` on the admin database, in order, outside any transaction."""
    connection = await asyncpg.connect(pg.url(pg.admin_db), timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def temporary_database(pg: Postgres, purpose: str) -> Iterator[str]:
    """A new empty database, dropped (with any connection to it) on the way out. It runs
    an event loop of its own: enter it outside the benchmark's loop."""
    name = f"{PREFIX}{purpose}_{secrets.token_hex(4)}"
    try:
        asyncio.run(admin(pg, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"cannot create database {name} at {pg.url(pg.admin_db)}: {exc}") from exc
    try:
        yield name
    finally:
        try:
            asyncio.run(
                admin(
                    pg,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
                    f'DROP DATABASE IF EXISTS "{name}"',
                )
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise BenchError(f"could not drop database {name}; drop it by hand: {exc}") from exc
