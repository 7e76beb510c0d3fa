"""One database transaction per use case: nothing commits unless the use case says so."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .checkpoint_repository import SqlCheckpointRepository
from .database import WRITE_OPTION
from .session_repository import SqlSessionRepository


class SqlUnitOfWork:
    """``async with uow:`` opens a connection and a transaction; leaving without
    ``commit()`` rolls back."""

    sessions: SqlSessionRepository
    checkpoints: SqlCheckpointRepository

    def __init__(self, engine: AsyncEngine, *, write: bool = True) -> None:
        self._engine = engine
        self._write = write
        self._connection: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        connection = await self._engine.connect()
        try:
            if self._write:
                await connection.execution_options(**{WRITE_OPTION: True})
            await connection.begin()
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self.sessions = SqlSessionRepository(connection)
        self.checkpoints = SqlCheckpointRepository(connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if connection.in_transaction():
                await connection.rollback()
        finally:
            await connection.close()

    async def commit(self) -> None:
        assert self._connection is not None, "commit() outside `async with`"
        await self._connection.commit()


class SqlUnitOfWorkFactory:
    """Builds units of work on one engine; ``reader()`` gives a read-only one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=True)

    def reader(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=False)
