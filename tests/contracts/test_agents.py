"""The agent registry and operators' tokens: names taken once, guarded saves, the
routing filters, in name order."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.agents.agent import AgentStatus
from industrial_orchestrator.domain.operator_tokens import OperatorToken, Role
from industrial_orchestrator.services.ports import DuplicateKeyError, UnitOfWorkFactory

from .builders import agent, at


async def test_a_name_is_taken_once_and_saves_are_guarded(uow: UnitOfWorkFactory):
    ada = agent("ada", metadata={"tags": ("a",)})
    async with uow() as unit:
        await unit.agents.add(ada)
        await unit.commit()
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):
            await unit.agents.add(agent("ada"))
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):
            await unit.agents.add(ada.evolve(name="another"))
    stored = ada.evolve(metadata={"tags": ["a"]})  # as JSON gives it back
    busy = stored.evolve(status=AgentStatus.BUSY, tasks_in_progress=2, version=2)
    async with uow() as unit:
        assert await unit.agents.get(ada.id) == stored
        assert not await unit.agents.save(stored.evolve(version=7), busy)
        assert not await unit.agents.save(agent("nobody"), busy)
        assert await unit.agents.save(stored, busy)
        assert not await unit.agents.save(stored, busy)  # it moved on
        await unit.commit()
    async with uow() as unit:
        assert await unit.agents.get(ada.id) == busy
        assert await unit.agents.remove(ada.id)
        assert not await unit.agents.remove(ada.id)
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.agents.all() == []


async def test_routing_filters_in_name_order(uow: UnitOfWorkFactory):
    made = {
        "cy": agent("cy", ("python", "go")),
        "ada": agent("ada", ("python",)),
        "bo": agent("bo", ("python", "go"), status=AgentStatus.DEGRADED),
        "full": agent("full", ("python", "go"), tasks_in_progress=2),
        "busy": agent("busy", ("python", "go"), status=AgentStatus.BUSY),
        "gone": agent("gone", ("python", "go"), status=AgentStatus.OFFLINE),
    }
    async with uow() as unit:
        for each in made.values():
            await unit.agents.add(each)
        await unit.commit()
    async with uow.reader() as unit:
        agents = unit.agents
        names = [each.name for each in await agents.all()]
        assert names == sorted(made)
        assert [each.name for each in await agents.candidates(["go", "python"])] == ["bo", "cy"]
        assert [each.name for each in await agents.candidates([])] == ["ada", "bo", "cy"]
        assert [each.name for each in await agents.holders(["go"])] == ["bo", "busy", "cy", "full"]
        assert await agents.holders(["rust"]) == []
        assert await agents.count_active() == 5


async def test_operator_tokens_by_name_and_digest(uow: UnitOfWorkFactory):
    first = OperatorToken(uuid4(), "ci", Role.OPERATOR, "d1", at(1))
    second = OperatorToken(uuid4(), "wall", Role.VIEWER, "d2", at(0))
    async with uow() as unit:
        await unit.operator_tokens.add(first)
        await unit.operator_tokens.add(second)
        await unit.commit()
    for taken in (replace(first, id=uuid4(), digest="d3"), replace(first, id=uuid4(), name="x")):
        async with uow() as unit:
            with pytest.raises(DuplicateKeyError):
                await unit.operator_tokens.add(taken)
    async with uow() as unit:
        tokens = unit.operator_tokens
        assert await tokens.by_digest("d2") == second
        assert await tokens.by_name("ci") == first
        assert await tokens.by_digest("nope") is None
        assert await tokens.all() == [second, first]
        assert await tokens.revoke("ci", at(5))
        assert not await tokens.revoke("ci", at(6))
        assert not await tokens.revoke("nobody", at(6))
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.operator_tokens.by_name("ci") == replace(first, revoked_at=at(5))
