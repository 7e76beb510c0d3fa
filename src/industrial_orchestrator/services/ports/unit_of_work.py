"""A transaction over every repository, and what makes one."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from .agents import AgentRepository
from .contexts import ContextRepository
from .effects import EffectRepository
from .events import EventRepository
from .operator_tokens import OperatorTokenRepository
from .sessions import CheckpointRepository, SessionRepository
from .tasks import AttemptRepository, TaskRepository
from .webhooks import WebhookRepository


class DuplicateKeyError(Exception):
    """A uniqueness constraint refused the write (raised by repositories)."""


class UnitOfWork(Protocol):
    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def checkpoints(self) -> CheckpointRepository: ...

    @property
    def events(self) -> EventRepository: ...

    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def contexts(self) -> ContextRepository: ...

    @property
    def agents(self) -> AgentRepository: ...

    @property
    def attempts(self) -> AttemptRepository: ...

    @property
    def operator_tokens(self) -> OperatorTokenRepository: ...

    @property
    def webhooks(self) -> WebhookRepository: ...

    @property
    def effects(self) -> EffectRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork:
        """A unit of work that may write."""

    def reader(self) -> UnitOfWork:
        """A unit of work that only reads (never blocks writers)."""

    def single(self) -> UnitOfWork:
        """A unit of work for one write that stands alone (one statement, or an insert
        and the read of what refused it): on PostgreSQL each statement commits as it
        runs, which saves a transaction's BEGIN and COMMIT round trips. Writes that must
        stand or fall together take a unit of work of their own (``()``)."""
