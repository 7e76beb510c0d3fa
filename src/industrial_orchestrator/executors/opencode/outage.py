"""A provider outage during a turn (``domain.provider_outage`` decides, this acts):
OpenCode retries a failing provider at length, so the attempt is marked troubled once
when the outage begins (the engine shows DEGRADED), RUNNING again only once the provider
answers, and ended for good (``Turn.final``) with the provider's error and the setting
to fix when the outage outlives ``provider_retry_budget_seconds``."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ...domain.events import LogStream
from ...domain.provider_outage import Signal, Step, exhausted_reason, next_step
from .policy import OpenCodePolicy
from .turn import Turn


async def follow_outage(
    policy: OpenCodePolicy,
    turn: Turn,
    signal: Signal,
    error: str | None = None,
    attempt: Any = None,
) -> None:
    """Follow the provider's outage: DEGRADED once when it begins, RUNNING again only
    once the provider answered, and the attempt's end when it outlives the budget."""
    if turn.final or (turn.outage is None and signal != Signal.RETRYING):
        return
    now = time.monotonic()
    budget = policy.provider_retry_budget_seconds
    step = next_step(turn.outage, signal, now=now, budget_seconds=budget, error=error)
    turn.outage = step.outage
    if step.step == Step.BEGAN:
        assert step.outage is not None
        await turn.emit(
            LogStream.SYSTEM,
            f"provider failing, OpenCode retrying (attempt {attempt}): {step.outage.error}",
        )
        if turn.hold_up is not None:
            with contextlib.suppress(Exception):
                await turn.hold_up(f"provider retrying: {step.outage.error}")
    elif step.step == Step.ENDED:
        await turn.emit(LogStream.SYSTEM, "provider answering again")
        if turn.hold_up is not None:
            with contextlib.suppress(Exception):
                await turn.hold_up(None)
    elif step.step == Step.EXHAUSTED:
        assert step.outage is not None
        turn.final = True
        turn.error = exhausted_reason(
            step.outage, now=now, budget_seconds=budget, fix=_fix(policy, turn)
        )
        await turn.emit(LogStream.SYSTEM, f"{turn.error}; the attempt ends FAILED")


def _fix(policy: OpenCodePolicy, turn: Turn) -> str:
    if turn.model is None:
        return policy.unconfigured_fix
    return (
        f"check the model {turn.model} (OPENCODE_MODEL, or the agent's model) and its "
        "provider's key in OpenCode's environment"
    )
