"""A running session's health: why a READY task has nobody fit to do it (``unserved``),
and where that moves the session (``health_move``)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from typing import Any
from uuid import UUID

import pytest

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, new_agent
from industrial_orchestrator.domain.sessions.health import BACK_TO_RUNNING, health_move, unserved
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.task import Task, TaskType, new_task

S = SessionState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = count(1)
DEGRADED = {"success_count": 1, "failure_count": 9}
PROVEN = {"success_count": 10, "failure_count": 0}

TASK: Task = new_task(
    id=UUID(int=1),
    title="Write it",
    description="d",
    task_type=TaskType.CODE_GENERATION,
    required_capabilities=["python", "tests"],
    estimated_effort=1.0,
    now=T0,
)


def agent(name: str, record: dict[str, Any] | None = None) -> Agent:
    made = new_agent(
        id=UUID(int=next(_ids)),
        name=name,
        agent_type="implementer",
        capabilities=("python", "tests"),
        kind=AgentKind.INTERNAL,
        max_concurrent_tasks=1,
        now=T0,
    )
    return made.evolve(**record) if record else made


NOBODY = "no agent can do 'Write it' (needs python, tests)"
ONLY_DEGRADED = "only DEGRADED-tier agents can do 'Write it' (needs python, tests)"
NOT_NAMED = (
    "none of the agents this session is limited to (ann, bob) is online with what "
    "'Write it' needs (python, tests)"
)


@pytest.mark.parametrize(
    ("holders", "limited_to", "trouble"),
    [
        ([], (), NOBODY),
        ([], ("ann",), NOBODY),  # nobody at all says more than "none of yours"
        ([agent("cy")], (), None),
        ([agent("cy", PROVEN)], (), None),
        ([agent("cy", DEGRADED)], (), ONLY_DEGRADED),
        ([agent("cy", DEGRADED), agent("dee", DEGRADED)], (), ONLY_DEGRADED),
        # One agent above the DEGRADED tier is enough.
        ([agent("cy", DEGRADED), agent("dee")], (), None),
        # Limited to named agents: one of them must be online.
        ([agent("cy")], ("ann", "bob"), NOT_NAMED),
        ([agent("cy"), agent("bob")], ("ann", "bob"), None),
        ([agent("bob", DEGRADED)], ("ann", "bob"), ONLY_DEGRADED),
    ],
)
def test_unserved(holders: list[Agent], limited_to: tuple[str, ...], trouble: str | None) -> None:
    assert unserved(TASK, holders, limited_to) == trouble


@pytest.mark.parametrize(
    ("status", "trouble", "move"),
    [
        (S.RUNNING, "no agent", (S.DEGRADED, "no agent")),
        (S.RUNNING, None, None),
        (S.RUNNING, "", None),  # no words, no trouble
        (S.DEGRADED, None, (S.RUNNING, BACK_TO_RUNNING)),
        (S.DEGRADED, "still none", None),
        # Only a running session's health is the engine's to change.
        (S.PAUSED, "no agent", None),
        (S.PAUSED, None, None),
        (S.COMPLETED, None, None),
    ],
)
def test_health_move(
    status: SessionState, trouble: str | None, move: tuple[SessionState, str] | None
) -> None:
    assert health_move(status, trouble) == move
