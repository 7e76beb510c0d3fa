"""The composition root: settings in, a wired set of components out, built once at start-up."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings
from .coordination.event_bus import EventBus, LocalEventBus
from .coordination.locks import LocalLock, Lock
from .coordination.snapshot_cache import SnapshotCache
from .domain.effects import EffectKind
from .domain.events import NewEvent
from .domain.sessions.stepping import steps_called_by
from .domain.tasks.artifacts import ArtifactLimits
from .domain.webhooks import RetryPolicy
from .domain.work_news import offers_work
from .executors.opencode.runtime import build_opencode
from .runtime.architect_planner import ArchitectPlanner
from .runtime.dispatcher import Dispatcher
from .runtime.reaper import Reaper
from .runtime.runtime import Runtime
from .runtime.session_runner import SessionRunner
from .runtime.verification import Verifier
from .runtime.webhooks import HttpWebhookSender, WebhookDispatcher
from .services.agents import AgentService
from .services.contexts import ContextService
from .services.effects import EffectLedger, EffectRecovery
from .services.events import EventLog
from .services.offer_gate import OfferGate
from .services.operator_tokens import OperatorTokens
from .services.ports import UnitOfWorkFactory
from .services.session_engine import SessionEngine
from .services.session_schedule import SessionSchedule
from .services.sessions import SessionService, utc_now
from .services.task_leases import LeasePolicy, TaskLeases
from .services.tasks import TaskService
from .services.webhooks import WebhookPolicy, WebhookService
from .storage.database import create_engine
from .storage.migrate import upgrade_to_head
from .storage.planner_statistics import analyze_new_tables
from .storage.sqlite_owner import AlreadyServed as AlreadyServed
from .storage.sqlite_owner import claim, claim_file
from .storage.unit_of_work import CommitListener, SqlUnitOfWorkFactory
from .workspaces.files import WorkspaceFiles
from .workspaces.worktrees import GitWorktrees

log = structlog.get_logger("industrial_orchestrator.bootstrap")

INTERNAL_FLEET_LOCK = "internal-agents.lock"


@dataclass(slots=True)
class Services:
    """The service graph over one unit of work and one clock (``wire``)."""

    settings: Settings
    uow: UnitOfWorkFactory
    sessions: SessionService
    events: EventLog
    bus: EventBus
    tasks: TaskService
    contexts: ContextService
    agents: AgentService
    leases: TaskLeases
    lock: Lock
    session_engine: SessionEngine
    trees: GitWorktrees
    operator_tokens: OperatorTokens
    webhooks: WebhookService
    ledger: EffectLedger
    recovery: EffectRecovery
    schedule: SessionSchedule


@dataclass(slots=True)
class Components(Services):
    """The services over the database, as ``build`` connects them."""

    engine: AsyncEngine

    async def close(self) -> None:
        try:
            await self.bus.close()
        finally:
            await self.engine.dispose()


def announcing(bus: EventBus, listeners: Sequence[CommitListener] = ()) -> CommitListener:
    """What a unit of work calls after a commit that stored events: the bus wakes the
    log's readers (naming the sessions the events call to step) and whoever waits for
    work, then each listener hears of them."""

    def committed(stored: Sequence[NewEvent]) -> None:
        bus.publish(work=offers_work(stored), steps=steps_called_by(stored))
        for listener in listeners:
            listener(stored)

    return committed


async def build(
    settings: Settings, *, migrate: bool = True, listeners: Sequence[CommitListener] = ()
) -> Components:
    """Connect, migrate and wire. ``listeners`` hear of every batch of committed events
    (after the event bus has announced it)."""
    engine = create_engine(
        settings.database,
        pool_size=settings.db_pool_size,
        plan_cache_mode=settings.db_plan_cache_mode,
    )
    bus_started = False
    try:
        if migrate:
            await upgrade_to_head(engine)
        bus, lock, cache = _coordination(settings)
        uow = SqlUnitOfWorkFactory(engine, on_commit=announcing(bus, listeners))
        services = wire(settings, uow, bus=bus, lock=lock, cache=cache)
        await bus.start()
        bus_started = True
        # A session queued before a restart, or a limit raised since, may start now.
        await services.sessions.promote_queued()
    except BaseException:
        if bus_started:
            await bus.close()
        await engine.dispose()
        raise
    parts = {part.name: getattr(services, part.name) for part in dataclasses.fields(services)}
    return Components(**parts, engine=engine)


def wire(
    settings: Settings,
    uow: UnitOfWorkFactory,
    *,
    bus: EventBus,
    lock: Lock,
    cache: SnapshotCache | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Services:
    """Every service, over ``uow`` and ``clock``: the SQL unit of work and the wall
    clock in ``build``; the in-memory one and a fake clock in the fast tests. No I/O."""
    sessions = SessionService(
        uow,
        max_running=settings.max_concurrent_sessions,
        checkpoint_retention=settings.checkpoint_retention,
        default_priority=settings.default_session_priority,
        clock=clock,
    )
    trees = GitWorktrees(settings.orchestrator_home)
    ledger = EffectLedger(
        uow,
        clock=clock,
        owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        grace_seconds=settings.effect_grace_seconds,
        # One process serves a SQLite database: what another left unfinished, it left dead.
        single_process=settings.database.get_backend_name() == "sqlite",
        failpoints=[p.strip() for p in settings.failpoints.split(",") if p.strip()],
    )
    gate = OfferGate()
    leases = TaskLeases(
        uow,
        clock=clock,
        policy=LeasePolicy(
            lease_seconds=settings.task_lease_seconds,
            max_attempts=settings.task_max_attempts,
            heartbeat_seconds=settings.agent_heartbeat_seconds,
            started_at=clock(),
            artifact_limits=ArtifactLimits(
                max_bytes=settings.artifact_max_bytes, max_count=settings.artifact_max_count
            ),
            artifacts_home=settings.orchestrator_home / "artifacts",
            max_parallel_tasks=settings.session_max_parallel_tasks,
        ),
        writer=WorkspaceFiles(),
        ledger=ledger,
        gate=gate,
    )
    session_engine = SessionEngine(
        uow,
        sessions,
        clock=clock,
        session_timeout_seconds=settings.session_timeout_seconds,
        checkpoint_interval_seconds=settings.checkpoint_interval_seconds,
        max_parallel_tasks=settings.session_max_parallel_tasks,
        trees=trees,
        ledger=ledger,
        gate=gate,
    )
    return Services(
        settings,
        uow,
        sessions,
        EventLog(uow, clock=clock),
        bus,
        TaskService(uow, clock=clock),
        ContextService(uow, clock=clock),
        AgentService(
            uow,
            clock=clock,
            lease_seconds=settings.task_lease_seconds,
            max_attempts=settings.task_max_attempts,
            cache=cache,
            cache_seconds=settings.agent_cache_seconds,
        ),
        leases,
        lock,
        session_engine,
        trees,
        OperatorTokens(uow, clock=clock),
        WebhookService(
            uow,
            clock=clock,
            policy=WebhookPolicy(
                retry=RetryPolicy(
                    max_attempts=settings.webhook_max_attempts,
                    first_delay=settings.webhook_backoff_seconds,
                ),
                timeout_seconds=settings.webhook_timeout_seconds,
            ),
        ),
        ledger,
        EffectRecovery(
            ledger,
            {
                EffectKind.WORKSPACE_WRITE: leases.finish_write,
                EffectKind.CHECKPOINT_COMMIT: session_engine.finish_checkpoint,
            },
        ),
        SessionSchedule(
            uow,
            clock=clock,
            session_timeout_seconds=settings.session_timeout_seconds,
            checkpoint_interval_seconds=settings.checkpoint_interval_seconds,
        ),
    )


def claim_sqlite(database: Path) -> None:
    """Serve a SQLite database from this process alone; ``AlreadyServed`` when another
    process does (``storage.sqlite_owner``)."""
    claim(database)


async def migrate(settings: Settings) -> None:
    """Bring the database's schema to the newest revision (``orchestrator migrate``)."""
    engine = create_engine(settings.database, pool_size=2)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def operator_tokens(settings: Settings) -> AsyncIterator[OperatorTokens]:
    """The operator tokens' service alone, for the ``token`` commands on the server's
    own database."""
    engine = create_engine(settings.database, pool_size=2)
    try:
        yield OperatorTokens(SqlUnitOfWorkFactory(engine), clock=utc_now)
    finally:
        await engine.dispose()


def build_runtime(
    components: Services, *, monotonic: Callable[[], float] = time.monotonic
) -> Runtime:
    """The runtime (``runtime/runtime.py``) over ``components``, not started: the
    session engine and the internal agents only where ``ENGINE_ENABLED`` (and
    ``INTERNAL_AGENTS``) say so; the reaper and webhook delivery always."""
    settings = components.settings
    opencode = None
    fleet_claim = None
    if settings.engine_enabled and settings.internal_agents:
        # One process per home drives the internal fleet (its agents' names, and the
        # managed OpenCode's state): the first to start, of `serve --workers N` say.
        fleet_claim = claim_file(settings.orchestrator_home / INTERNAL_FLEET_LOCK)
        if fleet_claim is None:
            log.info("internal_agents_elsewhere", home=str(settings.orchestrator_home))
    if fleet_claim is not None:
        opencode = build_opencode(settings, trees=components.trees)
    artifacts = settings.orchestrator_home / "artifacts"
    runner = None
    dispatcher = None
    if settings.engine_enabled:
        runner = SessionRunner(
            components.session_engine,
            components.schedule,
            components.sessions,
            Verifier(
                components.sessions,
                components.events,
                timeout_seconds=settings.verify_timeout_seconds,
                artifacts_home=artifacts,
            ),
            components.bus,
            components.lock,
            tick_seconds=settings.engine_tick_seconds,
            artifacts_home=artifacts,
            lease_seconds=settings.session_lease_seconds,
            single_process=settings.database.get_backend_name() == "sqlite",
            trees=components.trees,
            coalesce_seconds=settings.engine_coalesce_seconds,
            monotonic=monotonic,
            planner=(
                ArchitectPlanner(opencode.executor, components.agents, components.events)
                if opencode
                else None
            ),
        )
        if opencode is not None:
            dispatcher = Dispatcher(
                components.agents,
                components.leases,
                executors={opencode.executor.name: opencode.executor},
                sessions=components.sessions,
                contexts=components.contexts,
                gate=components.session_engine.gate,
                bus=components.bus,
                beat_seconds=settings.engine_tick_seconds,
            )
    return Runtime(
        reaper=Reaper(
            components.leases,
            components.lock,
            every_seconds=settings.reaper_seconds,
            recovery=components.recovery,
            maintenance=(
                partial(analyze_new_tables, components.engine)
                if isinstance(components, Components)
                else None
            ),
        ),
        webhooks=WebhookDispatcher(
            components.webhooks,
            components.bus,
            components.lock,
            HttpWebhookSender(timeout_seconds=settings.webhook_timeout_seconds),
            poll_seconds=settings.webhook_poll_seconds,
        ),
        runner=runner,
        dispatcher=dispatcher,
        opencode=opencode,
        agents=components.agents,
        fleet_claim=fleet_claim,
    )


def _coordination(settings: Settings) -> tuple[EventBus, Lock, SnapshotCache | None]:
    """Redis pub/sub, locks and the routable-agent cache across replicas when REDIS_HOST
    is set; else in-process, and no cache (routing reads the database)."""
    if not settings.redis_host:
        return LocalEventBus(), LocalLock(), None
    from redis.asyncio import Redis

    from .coordination.locks import RedisLock
    from .coordination.redis_event_bus import RedisEventBus
    from .coordination.snapshot_cache import RedisSnapshotCache

    redis = Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return (
        RedisEventBus(redis, channel=f"{settings.redis_prefix}:events"),
        RedisLock(redis, prefix=settings.redis_prefix),
        RedisSnapshotCache(redis, prefix=settings.redis_prefix),
    )
