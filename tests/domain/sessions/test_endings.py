"""When the engine ends a session on its own: its time limit and budget
(``SessionLimits``), and a stuck plan (``stuck_ending``)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from industrial_orchestrator.domain.sessions.endings import (
    MAX_GIVE_UP_CHARS,
    Ending,
    SessionLimits,
    stuck_ending,
)
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.sessions.progress import PlanState, Progress
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.task import (
    Task,
    TaskStatus,
    TaskType,
    new_task,
    task_transition,
)

S = SessionState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = SessionLimits(default_timeout_seconds=3600)
TOKENS = "budget_exceeded: 1001 tokens used, budget 1000"


@pytest.mark.parametrize(
    ("status", "options", "ran", "tokens", "expected"),
    [
        # Within the default limit and no budget.
        (S.RUNNING, SessionOptions(), 3599.0, 0, None),
        (S.RUNNING, SessionOptions(), 3600.0, 0, None),  # exactly the limit is within it
        (S.RUNNING, SessionOptions(), 3600.5, 0, Ending(S.TIMEOUT, "ran longer than 3600 s")),
        # The guide's table has no DEGRADED -> TIMEOUT: it fails instead.
        (
            S.DEGRADED,
            SessionOptions(),
            3601.0,
            0,
            Ending(S.FAILED, "timed out while DEGRADED: ran longer than 3600 s"),
        ),
        # The session's own limit overrides the default, longer or shorter.
        (
            S.RUNNING,
            SessionOptions(timeout_seconds=60),
            61.0,
            0,
            Ending(S.TIMEOUT, "ran longer than 60 s"),
        ),
        (S.RUNNING, SessionOptions(timeout_seconds=7200), 3601.0, 0, None),
        # Its budget.
        (S.RUNNING, SessionOptions(max_tokens=1000), 10.0, 1000, None),
        (S.RUNNING, SessionOptions(max_tokens=1000), 10.0, 1001, Ending(S.FAILED, TOKENS)),
        (S.DEGRADED, SessionOptions(max_tokens=1000), 10.0, 1001, Ending(S.FAILED, TOKENS)),
        # Out of time and over budget: the time limit is the reason given.
        (
            S.RUNNING,
            SessionOptions(timeout_seconds=60, max_tokens=1000),
            61.0,
            1001,
            Ending(S.TIMEOUT, "ran longer than 60 s"),
        ),
    ],
)
def test_limits(
    status: SessionState,
    options: SessionOptions,
    ran: float,
    tokens: int,
    expected: Ending | None,
) -> None:
    assert LIMITS.ending(status, options, ran_seconds=ran, tokens_used=tokens, cost_usd=0.0) == (
        expected
    )


def test_a_cost_over_budget_fails_it() -> None:
    ending = LIMITS.ending(
        S.RUNNING, SessionOptions(max_cost_usd=1.0), ran_seconds=1.0, tokens_used=0, cost_usd=1.5
    )
    assert ending is not None
    assert ending.state == S.FAILED
    assert ending.reason.startswith("budget_exceeded:")


@pytest.mark.parametrize(("own", "timeout"), [(None, 3600), (0, 3600), (60, 60)])
def test_timeout_of(own: int | None, timeout: int) -> None:
    assert LIMITS.timeout_of(SessionOptions(timeout_seconds=own)) == timeout


def task(n: int, status: TaskStatus, summary: str | None = None) -> Task:
    made = new_task(
        id=UUID(int=n),
        title=f"t{n}",
        description="d",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["code_generation"],
        estimated_effort=1.0,
        now=T0,
    )
    path = {
        TaskStatus.COMPLETED: (TaskStatus.READY, TaskStatus.RUNNING, TaskStatus.COMPLETED),
        TaskStatus.FAILED: (TaskStatus.READY, TaskStatus.RUNNING, TaskStatus.FAILED),
        TaskStatus.CANCELLED: (TaskStatus.CANCELLED,),
    }[status]
    for step in path:
        made = task_transition(made, step, now=T0)
    return made.evolve(result_summary=summary)


def stuck(finished: list[Task], failed: list[Task]) -> Progress:
    return Progress(PlanState.STUCK, [], [], finished, failed, len(finished) + len(failed))


@pytest.mark.parametrize(
    ("finished", "failed", "expected"),
    [
        (
            [],
            [task(1, TaskStatus.FAILED)],
            Ending(S.FAILED, "no task could be done: 't1' (FAILED) failed"),
        ),
        (
            [task(2, TaskStatus.COMPLETED)],
            [task(1, TaskStatus.FAILED)],
            Ending(S.PARTIALLY_COMPLETED, "1 task(s) done; cannot go on: 't1' (FAILED) failed"),
        ),
        # The first failure that says why is quoted, after the list.
        (
            [],
            [task(1, TaskStatus.CANCELLED), task(2, TaskStatus.FAILED, "quota; set KEY")],
            Ending(
                S.FAILED,
                "no task could be done: 't1' (CANCELLED), 't2' (FAILED) failed; quota; set KEY",
            ),
        ),
        # Five failures named at most.
        (
            [],
            [task(n, TaskStatus.FAILED) for n in range(1, 8)],
            Ending(
                S.FAILED,
                "no task could be done: "
                + ", ".join(f"'t{n}' (FAILED)" for n in range(1, 6))
                + " failed",
            ),
        ),
    ],
)
def test_stuck_ending(finished: list[Task], failed: list[Task], expected: Ending) -> None:
    assert stuck_ending(stuck(finished, failed)) == expected


def test_a_stuck_plans_quote_is_cut() -> None:
    ending = stuck_ending(stuck([], [task(1, TaskStatus.FAILED, "x" * 5000)]))
    assert ending.reason.endswith("; " + "x" * MAX_GIVE_UP_CHARS)
