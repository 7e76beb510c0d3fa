"""The agent registry: register, deregister, heartbeat, list, statistics, routing."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import structlog

from ..coordination.snapshot_cache import CacheUnavailable, SnapshotCache
from ..domain.agents import events as agent_events
from ..domain.agents.agent import Agent, AgentKind, AgentStatus, NewAgent, new_agent
from ..domain.agents.records import AgentRecord
from ..domain.agents.routing import NoAgentAvailable, RoutingDecision, route
from ..domain.agents.tiers import Tier
from ..domain.errors import Conflict, InvalidInput, NotFound, VersionConflict
from ..domain.tasks.attempts import AttemptOutcome, TaskAttempt
from ..domain.tasks.task import TaskType, normalise_capabilities
from . import agent_snapshots
from .agent_records import load_records
from .lease_endings import release_leases
from .ports import Clock, DuplicateKeyError, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.agents")

# A heartbeat that loses the race for the agent's row re-reads it this many times.
_BEAT_ROUNDS = 8


@dataclass(frozen=True, slots=True)
class AgentFilter:
    capabilities: Sequence[str] = ()
    statuses: Sequence[AgentStatus] = ()
    tiers: Sequence[Tier] = ()
    kinds: Sequence[AgentKind] = ()


@dataclass(frozen=True, slots=True)
class AgentStats:
    total: int
    active: int
    by_status: dict[AgentStatus, int]
    by_tier: dict[Tier, int]
    by_kind: dict[AgentKind, int]
    average_load: float


@dataclass(frozen=True, slots=True)
class Beat:
    agent: Agent
    leases: list[TaskAttempt]
    """The open attempts the heartbeat renewed."""
    abort: list[UUID]
    """Tasks the agent said it works on that are no longer its own (cancelled, taken
    back on pause, expired): it should stop working on them."""


class AgentService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        lease_seconds: float = 90.0,
        max_attempts: int = 3,
        cache: SnapshotCache | None = None,
        cache_seconds: float = 1.0,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._max_attempts = max_attempts
        self._cache = cache
        self._cache_seconds = cache_seconds
        self._decoded: tuple[bytes, list[Agent]] | None = None

    async def register(self, draft: NewAgent) -> Agent:
        agent = new_agent(
            id=uuid4(),
            name=draft.name,
            agent_type=draft.agent_type,
            capabilities=list(draft.capabilities),
            kind=draft.kind,
            max_concurrent_tasks=draft.max_concurrent_tasks,
            now=self._clock(),
            metadata=draft.metadata,
        )
        try:
            async with self._uow() as uow:
                await uow.agents.add(agent)
                await uow.events.append([agent_events.agent_registered(agent)])
                await uow.commit()
        except DuplicateKeyError:
            raise Conflict(
                f"An agent named {agent.name!r} is registered already; names are unique",
                {"name": agent.name},
            ) from None
        await self._forget_routable()
        log.info("agent_registered", agent_id=str(agent.id), name=agent.name)
        return agent

    async def enlist(self, draft: NewAgent, *, offline_reason: str | None = None) -> Agent:
        """Register one of our own agents, or bring its record (found by name, its
        history kept) in line with ``draft``. With ``offline_reason`` it is OFFLINE and
        says why; without, it is HEALTHY and beating from now on."""
        metadata = {**(draft.metadata or {}), "offline_reason": offline_reason}
        status = AgentStatus.OFFLINE if offline_reason else AgentStatus.HEALTHY
        refreshed = await self._renew(draft, metadata=metadata, status=status)
        if refreshed is not None:
            return refreshed
        agent = await self.register(
            NewAgent(
                name=draft.name,
                agent_type=draft.agent_type,
                capabilities=draft.capabilities,
                kind=draft.kind,
                max_concurrent_tasks=draft.max_concurrent_tasks,
                metadata=metadata,
            )
        )
        if offline_reason:
            return await self.enlist(draft, offline_reason=offline_reason)
        return agent

    async def rejoin(self, draft: NewAgent) -> Agent:
        """Register an external agent, or resume the one registered under its name: the
        same record (id, history, records per task type, leases) described anew by
        ``draft`` and HEALTHY. A worker whose token the server no longer accepts (a new
        SECRET_KEY, an outage longer than the token's life) comes back as itself; the
        caller has shown what registration asks (AGENT_REGISTRATION_TOKEN). An internal
        agent's name stays a conflict."""
        for _ in range(_BEAT_ROUNDS):
            resumed = await self._renew(
                draft, metadata=dict(draft.metadata or {}), status=AgentStatus.HEALTHY
            )
            if resumed is not None:
                log.info("agent_rejoined", agent_id=str(resumed.id), name=resumed.name)
                return resumed
            try:
                return await self.register(draft)
            except Conflict:
                continue  # registered under this name meanwhile: resume that one
        raise VersionConflict(
            f"Agent {draft.name!r} is changing too fast to register it; retry",
            {"name": draft.name},
        )

    async def _renew(
        self, draft: NewAgent, *, metadata: dict[str, Any], status: AgentStatus
    ) -> Agent | None:
        """The agent named ``draft.name``, described anew by ``draft`` with ``status``
        and a heartbeat now, its id and history kept; None when no agent has that name."""
        now = self._clock()
        for _ in range(_BEAT_ROUNDS):
            async with self._uow() as uow:
                existing = next(
                    (a for a in await uow.agents.all() if a.name == draft.name.strip()), None
                )
                if existing is None:
                    return None
                if existing.kind != draft.kind:
                    raise Conflict(
                        f"An {existing.kind.value} agent named {existing.name!r} is registered "
                        "already; rename one of them",
                        {"name": existing.name},
                    )
                fresh = new_agent(
                    id=existing.id,
                    name=draft.name,
                    agent_type=draft.agent_type,
                    capabilities=list(draft.capabilities),
                    kind=draft.kind,
                    max_concurrent_tasks=draft.max_concurrent_tasks,
                    now=now,
                    metadata=metadata,
                )
                refreshed = existing.evolve(
                    agent_type=fresh.agent_type,
                    capabilities=fresh.capabilities,
                    max_concurrent_tasks=fresh.max_concurrent_tasks,
                    metadata=fresh.metadata,
                    status=status,
                    last_heartbeat=now,
                    version=existing.version + 1,
                )
                if not await uow.agents.save(existing, refreshed):
                    continue
                if status != existing.status:
                    await uow.events.append(
                        [agent_events.agent_status_changed(refreshed, existing.status, now)]
                    )
                await uow.commit()
            await self._forget_routable()
            return refreshed
        raise VersionConflict(
            f"Agent {draft.name!r} is changing too fast to update it; retry",
            {"name": draft.name},
        )

    async def mark_offline(self, agent_id: UUID, reason: str) -> Agent:
        """One of our own agents cannot work (its executor is down): OFFLINE, saying why."""
        for _ in range(_BEAT_ROUNDS):
            now = self._clock()
            async with self._uow() as uow:
                agent = await _found(uow, agent_id)
                if agent.status == AgentStatus.OFFLINE and (
                    agent.metadata.get("offline_reason") == reason
                ):
                    return agent
                offline = agent.evolve(
                    status=AgentStatus.OFFLINE,
                    metadata={**agent.metadata, "offline_reason": reason},
                    version=agent.version + 1,
                )
                if not await uow.agents.save(agent, offline):
                    continue
                if agent.status != AgentStatus.OFFLINE:
                    await uow.events.append(
                        [agent_events.agent_status_changed(offline, agent.status, now)]
                    )
                await uow.commit()
            await self._forget_routable()
            log.warning("agent_offline", agent_id=str(agent_id), reason=reason)
            return offline
        raise VersionConflict(
            f"Agent {agent_id} is changing too fast to mark it offline; retry",
            {"agent_id": str(agent_id)},
        )

    async def deregister(self, agent_id: UUID) -> None:
        """Remove the agent; the tasks it holds go back to the queue (its tokens die with
        its record)."""
        async with self._uow() as uow:
            agent = await _found(uow, agent_id)
            now = self._clock()
            await release_leases(
                uow,
                agent_id,
                AttemptOutcome.RELEASED,
                "the agent was deregistered",
                now,
                self._max_attempts,
            )
            await uow.agents.remove(agent_id)
            await uow.events.append([agent_events.agent_deregistered(agent, self._clock())])
            await uow.commit()
        await self._forget_routable()
        log.info("agent_deregistered", agent_id=str(agent_id))

    async def get(self, agent_id: UUID) -> Agent:
        async with self._uow.reader() as uow:
            return await _found(uow, agent_id)

    async def profile(self, agent_id: UUID) -> tuple[Agent, list[AgentRecord]]:
        """The agent and its records per task type (``domain.agents.records``), by type."""
        async with self._uow.reader() as uow:
            agent = await _found(uow, agent_id)
            records = await load_records(
                uow, agent_ids=[agent_id], task_types=None, now=self._clock()
            )
        return agent, sorted(records.values(), key=lambda r: r.task_type.value)

    async def search(self, query: AgentFilter) -> list[Agent]:
        wanted = set(normalise_capabilities(query.capabilities))
        async with self._uow.reader() as uow:
            everyone = await uow.agents.all()
        return [
            agent
            for agent in everyone
            if wanted <= set(agent.capabilities)
            and (not query.statuses or agent.status in query.statuses)
            and (not query.tiers or agent.tier in query.tiers)
            and (not query.kinds or agent.kind in query.kinds)
        ]

    async def search_page(
        self, query: AgentFilter, *, offset: int, limit: int
    ) -> tuple[list[Agent], int]:
        """One page of ``search`` (by name), and how many agents match in all. A fleet is
        small enough to filter whole: capabilities are JSON sets that only some dialects
        can query."""
        found = await self.search(query)
        return found[offset : offset + limit], len(found)

    async def heartbeat(
        self,
        agent_id: UUID,
        *,
        status: AgentStatus | None = None,
        current_load: float | None = None,
        tasks_in_progress: int | None = None,
        metrics: dict[str, Any] | None = None,
        working_on: Collection[UUID] | None = None,
    ) -> Beat:
        """Record that the agent is alive, with what it reports of itself, and renew the
        leases it holds (only those of ``working_on`` when given: a lease the agent no
        longer knows of then runs out and goes back to the queue)."""
        for _ in range(_BEAT_ROUNDS):
            now = self._clock()
            async with self._uow() as uow:
                # Leases before the agent row: the order results and the reaper lock in
                # (attempt, task, agent), so a beat and a result never deadlock.
                leases = await uow.attempts.renew(
                    agent_id,
                    now + timedelta(seconds=self._lease_seconds),
                    only=None if working_on is None else list(working_on),
                )
                agent = await _found(uow, agent_id)
                changes: dict[str, Any] = {"last_heartbeat": now, "version": agent.version + 1}
                if status is not None:
                    changes["status"] = status
                elif agent.status == AgentStatus.OFFLINE:
                    changes["status"] = AgentStatus.HEALTHY  # it is back
                    if agent.metadata.get("offline_reason"):
                        changes["metadata"] = {**agent.metadata, "offline_reason": None}
                if current_load is not None:
                    changes["current_load"] = current_load
                if tasks_in_progress is not None:
                    changes["tasks_in_progress"] = tasks_in_progress
                if metrics is not None:
                    changes["metadata"] = {**agent.metadata, "metrics": metrics}
                beaten = agent.evolve(**changes)
                if not await uow.agents.save(agent, beaten):
                    continue  # a result or a lease changed the record meanwhile: re-read
                if beaten.status != agent.status:
                    await uow.events.append(
                        [agent_events.agent_status_changed(beaten, agent.status, now)]
                    )
                await uow.commit()
            if beaten.status != agent.status:
                await self._forget_routable()
            held = {lease.task_id for lease in leases}
            abort = [task for task in (working_on or ()) if task not in held]
            return Beat(beaten, leases, abort)
        raise VersionConflict(
            f"Agent {agent_id} is changing too fast to record the heartbeat; retry",
            {"agent_id": str(agent_id)},
        )

    async def stats(self) -> AgentStats:
        async with self._uow.reader() as uow:
            everyone = await uow.agents.all()
        by_status = Counter(agent.status for agent in everyone)
        return AgentStats(
            total=len(everyone),
            active=sum(1 for agent in everyone if agent.status != AgentStatus.OFFLINE),
            by_status={status: by_status.get(status, 0) for status in AgentStatus},
            by_tier={tier: sum(1 for a in everyone if a.tier == tier) for tier in Tier},
            by_kind={kind: sum(1 for a in everyone if a.kind == kind) for kind in AgentKind},
            average_load=(
                sum(agent.current_load for agent in everyone) / len(everyone) if everyone else 0.0
            ),
        )

    async def count_active(self) -> int:
        async with self._uow.reader() as uow:
            return await uow.agents.count_active()

    async def route(
        self,
        required_capabilities: Sequence[str],
        *,
        task_type: TaskType | None = None,
        exclude: Collection[UUID] = (),
    ) -> RoutingDecision:
        """The best agent for the work now (nothing is reserved: leases come with tasks).
        With a ``task_type``, the candidates' records for it rank them first (learned
        routing, ``domain.agents.records``); the records are read fresh, never cached."""
        if not required_capabilities and task_type is None:
            raise InvalidInput(
                "name the required_capabilities (or at least a task_type) to route",
                {"field": "required_capabilities"},
            )
        required = normalise_capabilities(required_capabilities)

        async def decide(agents: Sequence[Agent]) -> RoutingDecision:
            records: dict[UUID, AgentRecord] = {}
            holders = [a.id for a in agents if set(required) <= set(a.capabilities)]
            if task_type is not None and holders:
                async with self._uow.reader() as uow:
                    found = await load_records(
                        uow, agent_ids=holders, task_types=[task_type], now=self._clock()
                    )
                records = {agent_id: record for (agent_id, _), record in found.items()}
            return route(
                agents,
                required_capabilities=required,
                task_type=task_type,
                exclude=exclude,
                records=records,
            )

        try:
            if self._cache is not None:
                cached = await self._cached_routable()
                if cached is None:
                    async with self._uow.reader() as uow:
                        everyone = await uow.agents.all()
                    await self._cache_routable(everyone)
                    return await decide(everyone)
                return await decide(cached)
            # Only the agents that pass the hard filters, found by the database.
            async with self._uow.reader() as uow:
                candidates = await uow.agents.candidates(required)
            return await decide(candidates)
        except NoAgentAvailable:
            pass
        # Nobody qualified: say why, from the whole registry read fresh.
        async with self._uow.reader() as uow:
            everyone = await uow.agents.all()
        return await decide(everyone)

    async def _cached_routable(self) -> list[Agent] | None:
        if self._cache is None:
            return None
        try:
            raw = await self._cache.get(agent_snapshots.ROUTABLE_KEY)
        except CacheUnavailable:
            return None
        if raw is None:
            return None
        # Decoding thousands of agents costs more than routing them: decode each
        # snapshot once per process.
        if self._decoded is None or self._decoded[0] != raw:
            self._decoded = (raw, agent_snapshots.decode(raw))
        return self._decoded[1]

    async def _cache_routable(self, everyone: list[Agent]) -> None:
        if self._cache is None:
            return
        with contextlib.suppress(CacheUnavailable):
            await self._cache.put(
                agent_snapshots.ROUTABLE_KEY,
                agent_snapshots.encode(agent_snapshots.routable(everyone)),
                self._cache_seconds,
            )

    async def _forget_routable(self) -> None:
        if self._cache is not None:
            with contextlib.suppress(CacheUnavailable):
                await self._cache.invalidate(agent_snapshots.ROUTABLE_KEY)


async def _found(uow: UnitOfWork, agent_id: UUID) -> Agent:
    agent = await uow.agents.get(agent_id)
    if agent is None:
        raise NotFound(f"Agent {agent_id} is not registered", {"agent_id": str(agent_id)})
    return agent
