"""The composition root: settings in, a wired set of components out, built once at start-up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings
from .coordination.event_bus import EventBus, LocalEventBus
from .domain.events import NewEvent
from .services.agents import AgentService
from .services.contexts import ContextService
from .services.events import EventLog
from .services.sessions import SessionService, utc_now
from .services.tasks import TaskService
from .storage.database import create_engine
from .storage.migrate import upgrade_to_head
from .storage.unit_of_work import CommitListener, SqlUnitOfWorkFactory


@dataclass(slots=True)
class Components:
    settings: Settings
    engine: AsyncEngine
    uow: SqlUnitOfWorkFactory
    sessions: SessionService
    events: EventLog
    bus: EventBus
    tasks: TaskService
    contexts: ContextService
    agents: AgentService

    async def close(self) -> None:
        try:
            await self.bus.close()
        finally:
            await self.engine.dispose()


async def build(
    settings: Settings, *, migrate: bool = True, listeners: Sequence[CommitListener] = ()
) -> Components:
    """Connect, migrate and wire. ``listeners`` hear of every batch of committed events
    (after the event bus has announced it)."""
    engine = create_engine(settings.database, pool_size=settings.db_pool_size)
    bus_started = False
    try:
        if migrate:
            await upgrade_to_head(engine)
        bus = _event_bus(settings)

        def committed(stored: Sequence[NewEvent]) -> None:
            bus.publish()
            for listener in listeners:
                listener(stored)

        uow = SqlUnitOfWorkFactory(engine, on_commit=committed)
        clock = utc_now
        await bus.start()
        bus_started = True
        sessions = SessionService(
            uow,
            max_running=settings.max_concurrent_sessions,
            checkpoint_retention=settings.checkpoint_retention,
            default_priority=settings.default_session_priority,
            clock=clock,
        )
        # A session queued before a restart, or a limit raised since, may start now.
        await sessions.promote_queued()
    except BaseException:
        if bus_started:
            await bus.close()
        await engine.dispose()
        raise
    return Components(
        settings,
        engine,
        uow,
        sessions,
        EventLog(uow, clock=clock),
        bus,
        TaskService(uow, clock=clock),
        ContextService(uow, clock=clock),
        AgentService(uow, clock=clock),
    )


def _event_bus(settings: Settings) -> EventBus:
    """Redis pub/sub across replicas when REDIS_HOST is set, else in-process."""
    if not settings.redis_host:
        return LocalEventBus()
    from redis.asyncio import Redis

    from .coordination.redis_event_bus import RedisEventBus

    redis = Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return RedisEventBus(redis, channel=f"{settings.redis_prefix}:events")
