"""One database transaction per use case: nothing commits unless the use case says so."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..domain.errors import StorageUnavailable
from ..domain.events import NewEvent
from .agent_repository import SqlAgentRepository
from .attempt_repository import SqlAttemptRepository
from .checkpoint_repository import SqlCheckpointRepository
from .commit_writes import CommitWrites
from .context_repository import SqlContextRepository
from .database import WRITE_OPTION, is_sqlite
from .effect_repository import SqlEffectRepository
from .event_repository import SqlEventRepository
from .operator_token_repository import SqlOperatorTokenRepository
from .session_repository import SqlSessionRepository
from .task_repository import SqlTaskRepository
from .webhook_repository import SqlWebhookRepository

CommitListener = Callable[[Sequence[NewEvent]], None]


class SqlUnitOfWork:
    """``async with uow:`` opens a connection and a transaction; leaving without
    ``commit()`` rolls back. After a commit that stored events, ``on_commit`` hears of
    them (to wake the readers of the log)."""

    sessions: SqlSessionRepository
    checkpoints: SqlCheckpointRepository
    events: SqlEventRepository
    tasks: SqlTaskRepository
    contexts: SqlContextRepository
    agents: SqlAgentRepository
    attempts: SqlAttemptRepository
    operator_tokens: SqlOperatorTokenRepository
    webhooks: SqlWebhookRepository
    effects: SqlEffectRepository

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        write: bool = True,
        single: bool = False,
        writer_lock: asyncio.Lock | None = None,
        on_commit: CommitListener | None = None,
    ) -> None:
        self._engine = engine
        self._write = write
        self._single = single
        self._writer_lock = writer_lock
        self._on_commit = on_commit
        self._holds_lock = False
        self._connection: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        if self._writer_lock is not None:
            await self._writer_lock.acquire()
            self._holds_lock = True
        try:
            try:
                connection = await self._engine.connect()
            except (OSError, DBAPIError) as exc:
                raise _unavailable(exc) from exc
            try:
                if (self._single or not self._write) and not is_sqlite(self._engine):
                    # A PostgreSQL transaction at READ COMMITTED gives each statement its
                    # own snapshot anyway: a reader's BEGIN and ROLLBACK would be two
                    # round trips (a fifth of all statements) that buy nothing, and so
                    # would a lone write's BEGIN and COMMIT. (SQLite's read transaction is
                    # one snapshot for all its statements, and its writers queue: kept.)
                    await connection.execution_options(isolation_level="AUTOCOMMIT")
                elif self._write:
                    await connection.execution_options(**{WRITE_OPTION: True})
                await connection.begin()
            except BaseException as exc:
                with contextlib.suppress(OSError, DBAPIError):
                    await connection.close()
                if isinstance(exc, OSError | DBAPIError):
                    raise _unavailable(exc) from exc
                raise
        except BaseException:
            self._release()
            raise
        self._connection = connection
        # Writes kept for the commit join its last statement, the events' (PostgreSQL).
        writes = CommitWrites(connection)
        self.sessions = SqlSessionRepository(connection)
        self.events = SqlEventRepository(connection, writes)
        self.checkpoints = SqlCheckpointRepository(connection, self.events)
        self.tasks = SqlTaskRepository(connection, writes)
        self.contexts = SqlContextRepository(connection, writes)
        self.agents = SqlAgentRepository(connection, writes)
        self.attempts = SqlAttemptRepository(connection, self.events, writes)
        self.operator_tokens = SqlOperatorTokenRepository(connection)
        self.webhooks = SqlWebhookRepository(connection)
        self.effects = SqlEffectRepository(connection)
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
        # A connection the database dropped cannot be rolled back or closed cleanly; that
        # must not hide how the use case ended (nothing of it committed either way).
        try:
            with contextlib.suppress(OSError, DBAPIError):
                if connection.in_transaction() and not connection.invalidated:
                    await connection.rollback()
        finally:
            try:
                with contextlib.suppress(OSError, DBAPIError):
                    await connection.close()
            finally:
                self._release()
        if isinstance(exc, DBAPIError) and (
            exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
        ):
            raise _unavailable(exc) from exc

    async def commit(self) -> None:
        assert self._connection is not None, "commit() outside `async with`"
        stored = await self.events.flush()
        await self._connection.commit()
        if stored and self._on_commit is not None:
            self._on_commit(stored)

    def _release(self) -> None:
        if self._holds_lock and self._writer_lock is not None:
            self._holds_lock = False
            self._writer_lock.release()


class SqlUnitOfWorkFactory:
    """Builds units of work on one engine; ``reader()`` gives a read-only one.

    SQLite takes one writer at a time. Its own busy handler makes the others sleep and
    poll, which is unfair and slow under load, so this process queues its SQLite writers
    on an asyncio lock instead (first come, first served); the busy timeout still covers
    other processes such as ``orchestrator migrate``.
    """

    def __init__(self, engine: AsyncEngine, *, on_commit: CommitListener | None = None) -> None:
        self.engine = engine
        self._writer_lock = asyncio.Lock() if is_sqlite(engine) else None
        self._on_commit = on_commit

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine, write=True, writer_lock=self._writer_lock, on_commit=self._on_commit
        )

    def reader(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=False)

    def single(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine,
            write=True,
            single=True,
            writer_lock=self._writer_lock,
            on_commit=self._on_commit,
        )


def _unavailable(exc: BaseException) -> StorageUnavailable:
    reason = getattr(exc, "orig", None) or exc
    return StorageUnavailable(
        "The database is unavailable; retry shortly",
        {"reason": type(reason).__name__},
    )
