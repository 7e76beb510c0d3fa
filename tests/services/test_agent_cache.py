"""The routable-agent snapshot shared by replicas: routing reads it instead of the whole
registry, forgets it on registry changes, and never depends on it (both backends; the
PostgreSQL run uses the real Redis cache)."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from industrial_orchestrator.coordination.snapshot_cache import (
    CacheUnavailable,
    LocalSnapshotCache,
    RedisSnapshotCache,
)
from industrial_orchestrator.domain.agents.agent import AgentStatus, NewAgent
from industrial_orchestrator.domain.agents.routing import NoAgentAvailable
from industrial_orchestrator.services import agent_snapshots
from industrial_orchestrator.services.agents import AgentService
from industrial_orchestrator.services.sessions import utc_now

from ..backends import REDIS_HOST

# Long enough that a loaded machine still routes from the snapshot before it expires.
TTL = 3.0


@pytest.fixture
async def cache(backend):
    if backend == "sqlite":
        yield LocalSnapshotCache()
        return
    from redis.asyncio import Redis

    redis = Redis(host=REDIS_HOST, port=6379)
    prefix = f"test-{uuid4().hex}"
    try:
        yield RedisSnapshotCache(redis, prefix=prefix)
    finally:
        async for key in redis.scan_iter(f"{prefix}:*"):
            await redis.delete(key)
        await redis.aclose()


def _replica(app, cache) -> AgentService:
    return AgentService(app.state.components.uow, clock=utc_now, cache=cache, cache_seconds=TTL)


async def test_replicas_route_from_the_shared_snapshot_until_it_expires(app, cache):
    one, two = _replica(app, cache), _replica(app, cache)
    uncached = AgentService(app.state.components.uow, clock=utc_now)
    agent = await one.register(NewAgent("a", "implementer", ["python"]))
    assert (await one.route(["python"])).chosen.id == agent.id
    snapshot = await cache.get(agent_snapshots.ROUTABLE_KEY)
    assert snapshot is not None
    assert [a.id for a in agent_snapshots.decode(snapshot)] == [agent.id]

    # A replica that does not share the cache changes the registry: the snapshot is
    # stale for up to its TTL (routing reserves nothing; leases are taken in the DB).
    await uncached.heartbeat(agent.id, status=AgentStatus.OFFLINE)
    assert (await two.route(["python"])).chosen.id == agent.id
    await asyncio.sleep(TTL + 0.2)
    with pytest.raises(NoAgentAvailable) as refused:
        await two.route(["python"])
    assert refused.value.details["excluded"]["offline"] == 1


async def test_registry_changes_through_a_replica_forget_the_snapshot(app, cache):
    service = _replica(app, cache)
    first = await service.register(NewAgent("a", "implementer", ["python"]))
    await service.route(["python"])
    assert await cache.get(agent_snapshots.ROUTABLE_KEY) is not None
    second = await service.register(
        NewAgent("b", "implementer", ["python"], max_concurrent_tasks=5)
    )
    assert await cache.get(agent_snapshots.ROUTABLE_KEY) is None
    decision = await service.route(["python"])
    assert {decision.chosen.id, *(a.id for a, _ in decision.runners_up)} == {first.id, second.id}
    await service.heartbeat(first.id, status=AgentStatus.BUSY)
    assert await cache.get(agent_snapshots.ROUTABLE_KEY) is None
    assert (await service.route(["python"])).chosen.id == second.id
    await service.deregister(second.id)
    assert await cache.get(agent_snapshots.ROUTABLE_KEY) is None


async def test_a_refusal_from_the_snapshot_is_explained_from_the_registry(app, cache):
    service = _replica(app, cache)
    await service.register(NewAgent("a", "implementer", ["python"]))
    busy = await service.register(NewAgent("b", "implementer", ["rust"]))
    await service.heartbeat(busy.id, status=AgentStatus.BUSY)
    await service.route(["python"])  # the snapshot now holds only the routable "a"
    with pytest.raises(NoAgentAvailable) as refused:
        await service.route(["rust"])
    # Said from the whole registry: someone holds rust, but is busy.
    assert refused.value.details["excluded"]["busy"] == 1


class BrokenCache:
    async def get(self, key: str) -> bytes | None:
        raise CacheUnavailable("down")

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        raise CacheUnavailable("down")

    async def invalidate(self, key: str) -> None:
        raise CacheUnavailable("down")


async def test_routing_never_depends_on_the_cache(app):
    service = _replica(app, BrokenCache())
    agent = await service.register(NewAgent("a", "implementer", ["python"]))
    assert (await service.route(["python"])).chosen.id == agent.id
    await service.deregister(agent.id)


async def test_the_databases_candidate_filter_agrees_with_the_routing_rules(app):
    """Without a cache, routing reads only the candidates the database finds; they must
    be exactly the agents the pure rules would let through (both dialects' JSON)."""
    from industrial_orchestrator.domain.agents.routing import route

    uow = app.state.components.uow
    service = AgentService(uow, clock=utc_now)
    shapes = [
        (["python"], AgentStatus.HEALTHY, 1),
        (["python", "rust"], AgentStatus.DEGRADED, 2),
        (["Rust", "go"], AgentStatus.HEALTHY, 1),
        (["python", "go", "rust"], AgentStatus.BUSY, 3),
        (["python", "go"], AgentStatus.OFFLINE, 1),
        (["go"], AgentStatus.HEALTHY, 1),
    ]
    for n, (caps, status, capacity) in enumerate(shapes):
        agent = await service.register(
            NewAgent(f"agent-{n}", "implementer", caps, max_concurrent_tasks=capacity)
        )
        await service.heartbeat(agent.id, status=status, tasks_in_progress=1 if n == 5 else 0)
    async with uow.reader() as reader:
        everyone = await reader.agents.all()
    for wanted in (["python"], ["rust"], ["go"], ["python", "rust"], ["go", "rust"], ["x"]):
        async with uow.reader() as reader:
            found = await reader.agents.candidates(sorted(wanted))
        try:
            expected = route(everyone, required_capabilities=wanted)
        except NoAgentAvailable:
            assert found == [], wanted
            continue
        assert {a.name for a in found} == {
            expected.chosen.name,
            *(a.name for a, _ in expected.runners_up),
        }, wanted
        decided = await service.route(wanted)
        assert decided.chosen.id == expected.chosen.id
