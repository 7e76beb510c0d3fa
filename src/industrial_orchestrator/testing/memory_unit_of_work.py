"""An in-memory unit of work: ``services.ports`` without a database, for the fast tests,
the demo and the benchmarks.

It keeps what the services rely on from ``storage.unit_of_work.SqlUnitOfWork`` (the
contract suite in ``tests/contracts`` runs the same cases on it, SQLite and PostgreSQL):
guarded saves by version and state, duplicate keys refused with ``DuplicateKeyError``
where the SQL repositories raise it, per-session event numbers given at commit, global
event ids in commit order, nothing visible before ``commit()`` and nothing kept without
it, ``on_commit`` told of the events a commit stored, and the same filters and orders.
Writers run one at a time, as SQLite's do, which holds every family lock the ports
name and keeps two takers from one running slot. No I/O.

    factory = MemoryUnitOfWorkFactory()
    async with factory() as uow:
        await uow.sessions.add(session, None, None)
        await uow.commit()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ..domain.events import NewEvent
from ..services.ports import UnitOfWorkFactory
from .memory.agents import MemoryAgentRepository
from .memory.attempts import MemoryAttemptRepository
from .memory.checkpoints import MemoryCheckpointRepository
from .memory.contexts import MemoryContextRepository
from .memory.effects import MemoryEffectRepository
from .memory.events import MemoryEventRepository
from .memory.operator_tokens import MemoryOperatorTokenRepository
from .memory.sessions import MemorySessionRepository
from .memory.store import IntegrityViolation, Store, Transaction
from .memory.tasks import MemoryTaskRepository
from .memory.webhooks import MemoryWebhookRepository

__all__ = ["IntegrityViolation", "MemoryUnitOfWork", "MemoryUnitOfWorkFactory"]

CommitListener = Callable[[Sequence[NewEvent]], None]


class MemoryUnitOfWork:
    """``async with uow:`` begins a transaction (a writer waits for the one before it to
    end); leaving without ``commit()`` drops what it wrote. After a commit that stored
    events, ``on_commit`` hears of them. A commit begins the next transaction at once,
    as a SQL connection's does."""

    sessions: MemorySessionRepository
    checkpoints: MemoryCheckpointRepository
    events: MemoryEventRepository
    tasks: MemoryTaskRepository
    contexts: MemoryContextRepository
    agents: MemoryAgentRepository
    attempts: MemoryAttemptRepository
    operator_tokens: MemoryOperatorTokenRepository
    webhooks: MemoryWebhookRepository
    effects: MemoryEffectRepository

    def __init__(
        self, store: Store, *, write: bool = True, on_commit: CommitListener | None = None
    ) -> None:
        self._store = store
        self._write = write
        self._on_commit = on_commit
        self._tx: Transaction | None = None

    async def __aenter__(self) -> Self:
        if self._write:
            await self._store.writer.acquire()
        tx = self._tx = Transaction(self._store)
        self.sessions = MemorySessionRepository(tx)
        self.events = MemoryEventRepository(tx, self.sessions)
        self.checkpoints = MemoryCheckpointRepository(tx, self.events)
        self.tasks = MemoryTaskRepository(tx)
        self.contexts = MemoryContextRepository(tx)
        self.agents = MemoryAgentRepository(tx)
        self.attempts = MemoryAttemptRepository(tx, self.events)
        self.operator_tokens = MemoryOperatorTokenRepository(tx)
        self.webhooks = MemoryWebhookRepository(tx)
        self.effects = MemoryEffectRepository(tx)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tx, self._tx = self._tx, None
        if tx is None:
            return
        tx.discard()
        self.events.forget()
        if self._write:
            self._store.writer.release()

    async def commit(self) -> None:
        tx = self._tx
        assert tx is not None, "commit() outside `async with`"
        if self._write:
            self._apply(tx)
        elif tx.wrote or self.events.pending:
            # A reader that wrote (SQLite upgrades its transaction to a writer's): it
            # waits for the writer in turn, like any writer.
            async with self._store.writer:
                self._apply(tx)
        else:
            return

    def _apply(self, tx: Transaction) -> None:
        # Nothing awaits from the numbering to the last row: the commit is atomic.
        stored, numbered = self.events.flush()
        tx.apply(numbered)
        if stored and self._on_commit is not None:
            self._on_commit(stored)


class MemoryUnitOfWorkFactory:
    """Units of work on one in-memory database of their own, or on ``store``, another
    factory's (as two processes share one database); ``reader()`` gives one that takes no
    writer's turn and sees what is committed at each call."""

    def __init__(
        self, *, on_commit: CommitListener | None = None, store: Store | None = None
    ) -> None:
        self.store = Store() if store is None else store
        self._on_commit = on_commit

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store, write=True, on_commit=self._on_commit)

    def reader(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store, write=False)

    def single(self) -> MemoryUnitOfWork:
        return self()


if TYPE_CHECKING:
    # mypy checks here that the memory one implements every port the SQL one does.
    _conforms: UnitOfWorkFactory = MemoryUnitOfWorkFactory()
