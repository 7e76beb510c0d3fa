"""A background loop whose cancellation a library turned into an ordinary error still
stops: the request stays on the task, and the loop looks for it."""

from __future__ import annotations

import asyncio

from industrial_orchestrator.runtime.cancellation import stop_if_cancelled


async def _loop(rounds: list[int], *, checked: bool, until: asyncio.Event | None = None) -> None:
    while until is None or not until.is_set():
        try:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                raise ConnectionError("the connection was torn down mid-query") from None
        except Exception:
            if checked:
                stop_if_cancelled()
        rounds.append(1)


async def test_a_loop_that_checks_stops_although_the_cancellation_became_an_error() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(_loop(rounds, checked=True))
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    assert task in done
    assert task.cancelled()


async def test_without_the_check_it_would_go_on_for_ever() -> None:
    rounds: list[int] = []
    until = asyncio.Event()
    task = asyncio.create_task(_loop(rounds, checked=False, until=until))
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done  # the failure the check is for
    counted = len(rounds)
    await asyncio.sleep(0.05)
    assert len(rounds) > counted
    until.set()
    await task
