"""The offer gate: openings side by side, an offer alone, and an offer that asks holds
new openings back until it is done."""

from __future__ import annotations

import asyncio

import pytest

from industrial_orchestrator.services.offer_gate import OfferGate

pytestmark = pytest.mark.fast


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_openings_go_side_by_side() -> None:
    gate = OfferGate()
    async with gate.opening(), gate.opening():
        pass  # the second did not wait for the first


async def test_an_offer_waits_for_the_openings_under_way_and_holds_new_ones_back() -> None:
    gate = OfferGate()
    order: list[str] = []
    first = gate.opening()
    await first.__aenter__()

    async def offer() -> None:
        async with gate.offering():
            order.append("offer")

    async def late_opening() -> None:
        async with gate.opening():
            order.append("late opening")

    offered = asyncio.create_task(offer())
    await _settle()
    late = asyncio.create_task(late_opening())
    await _settle()
    assert order == []  # the offer waits for the first opening; the late one for the offer
    await first.__aexit__(None, None, None)
    await asyncio.gather(offered, late)
    assert order == ["offer", "late opening"]


async def test_offers_go_one_at_a_time() -> None:
    gate = OfferGate()
    inside = 0
    most = 0

    async def offer() -> None:
        nonlocal inside, most
        async with gate.offering():
            inside += 1
            most = max(most, inside)
            await _settle()
            inside -= 1

    await asyncio.gather(*(offer() for _ in range(3)))
    assert most == 1


async def test_an_offer_cancelled_while_waiting_lets_openings_through() -> None:
    gate = OfferGate()
    first = gate.opening()
    await first.__aenter__()
    offered = asyncio.create_task(_enter(gate))
    await _settle()
    offered.cancel()
    await asyncio.gather(offered, return_exceptions=True)
    async with asyncio.timeout(1), gate.opening():
        pass  # not held back by the offer that gave up
    await first.__aexit__(None, None, None)


async def _enter(gate: OfferGate) -> None:
    async with gate.offering():
        pass
