"""Ending leases inside the caller's transaction: a lost attempt (expired, released,
its agent gone), an attempt released because its task was moved on from outside, and
what the end of an attempt books on its agent.

These are steps, not use cases: the reaper, a result, an agent leaving and an operator
moving a task on all call them within their own transaction, so the task, the attempt
and the agent change together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import structlog

from ..domain.agents import events as agent_events
from ..domain.agents.agent import Agent
from ..domain.errors import Conflict, NotFound
from ..domain.tasks import events as task_events
from ..domain.tasks.attempts import AttemptOutcome, LeaseLost, end_lost_attempt
from ..domain.tasks.lease_rules import agent_after_attempt
from ..domain.tasks.task import Task
from .ports import UnitOfWork

log = structlog.get_logger("industrial_orchestrator.services.task_leases")

RETRY_ROUNDS = 8
"""Guarded writes that lose a race are retried this many times before giving up."""


async def release_leases(
    uow: UnitOfWork,
    agent_id: UUID,
    outcome: AttemptOutcome,
    reason: str,
    now: datetime,
    max_attempts: int,
) -> int:
    """Return every task ``agent_id`` holds to the queue (or fail it when out of
    attempts), within the caller's transaction."""
    released = 0
    for attempt in await uow.attempts.open_of_agent(agent_id):
        if await lose(uow, attempt.task_id, attempt.attempt, outcome, reason, now, max_attempts):
            released += 1
    return released


async def release_attempt(uow: UnitOfWork, task: Task, reason: str, now: datetime) -> None:
    """Close the task's open attempt as RELEASED, without holding it against the agent:
    the task was moved on from outside (an operator, its session ending or pausing), within
    the caller's transaction."""
    if task.attempt == 0:
        return
    attempt = await uow.attempts.get(task.id, task.attempt)
    if attempt is None or not attempt.is_open:
        return
    closed = attempt.evolve(outcome=AttemptOutcome.RELEASED, finished_at=now, error=reason)
    if not await uow.attempts.close(closed):
        return
    await uow.events.append([task_events.task_attempt_ended(task, closed)])
    agent = await uow.agents.get(attempt.agent_id)
    if agent is not None:
        await settle_agent(uow, agent, AttemptOutcome.RELEASED, now, on_record=False)


async def lose(
    uow: UnitOfWork,
    task_id: UUID,
    number: int,
    outcome: AttemptOutcome,
    reason: str,
    now: datetime,
    max_attempts: int,
) -> bool:
    """End an open attempt as lost; False when it had ended already."""
    task = await uow.tasks.get(task_id)
    attempt = await uow.attempts.get(task_id, number)
    if task is None or attempt is None or not attempt.is_open:
        return False
    states, closed = end_lost_attempt(
        task, attempt, outcome, reason=reason, now=now, max_attempts=max_attempts
    )
    if not await uow.attempts.close(closed):
        return False
    if task.attempt == number:
        await save_steps(uow, task, states)
    else:
        states = []
    agent = await uow.agents.get(attempt.agent_id)
    if agent is not None:
        # A task moved on by someone else (cancelled) is not held against the agent.
        await settle_agent(uow, agent, outcome, now, on_record=bool(states))
    await uow.events.append(
        [
            task_events.task_attempt_ended(task, closed),
            *(
                task_events.task_transition(before, after)
                for before, after in zip([task, *states], states, strict=False)
            ),
        ]
    )
    log.info(
        "lease_lost",
        task_id=str(task_id),
        agent_id=str(attempt.agent_id),
        attempt=number,
        outcome=outcome.value,
        reason=reason,
    )
    return True


async def save_steps(uow: UnitOfWork, task: Task, states: Sequence[Task]) -> None:
    """Save the task's successive ``states``, each guarded by the one before; LeaseLost
    when it was changed meanwhile."""
    before = task
    for after in states:
        if not await uow.tasks.save(before, after):
            raise LeaseLost(
                f"Task {task.id} was changed meanwhile; the attempt's end was not recorded",
                {"task_id": str(task.id)},
            )
        before = after


async def settle_agent(
    uow: UnitOfWork,
    agent: Agent,
    outcome: AttemptOutcome,
    now: datetime,
    *,
    on_record: bool = True,
) -> None:
    """Book the attempt's end on the agent (re-reading it if a heartbeat got between)."""
    for _ in range(RETRY_ROUNDS):
        settled = agent_after_attempt(agent, outcome, on_record=on_record)
        if await uow.agents.save(agent, settled):
            await _tier_moved(uow, agent, settled, now)
            return
        reread = await uow.agents.get(agent.id)
        if reread is None:
            return
        agent = reread
    raise Conflict("The agent's record is changing too fast; retry", {"agent_id": str(agent.id)})


async def settle_agent_at_commit(
    uow: UnitOfWork, agent: Agent, outcome: AttemptOutcome, now: datetime, *, stale: Exception
) -> None:
    """``settle_agent`` with the write kept for the commit, which raises ``stale`` if
    the record moved on meanwhile (the caller reads it again and starts over)."""
    settled = agent_after_attempt(agent, outcome)
    await uow.agents.save_at_commit(agent, settled, stale=stale)
    await _tier_moved(uow, agent, settled, now)


async def _tier_moved(uow: UnitOfWork, before: Agent, after: Agent, now: datetime) -> None:
    if after.tier != before.tier:
        await uow.events.append([agent_events.agent_tier_changed(after, before.tier, now)])


class AgentNotRegistered(NotFound):
    """The agent asking is not (or no longer) registered."""


def not_registered(agent_id: UUID) -> AgentNotRegistered:
    return AgentNotRegistered(f"Agent {agent_id} is not registered", {"agent_id": str(agent_id)})


async def registered_agent(uow: UnitOfWork, agent_id: UUID) -> Agent:
    """The agent's record, or ``AgentNotRegistered``."""
    agent = await uow.agents.get(agent_id)
    if agent is None:
        raise not_registered(agent_id)
    return agent
