"""What a verification verdict leads to, and whether a round still awaits one."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.review_rounds import Verdict, awaits_verdict, verdict
from industrial_orchestrator.domain.sessions.session import Session, SessionPhase
from industrial_orchestrator.domain.sessions.states import SessionState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("passed", "review_round", "max_rounds", "expected"),
    [
        (True, 0, 2, Verdict.COMPLETED),
        (True, 2, 2, Verdict.COMPLETED),  # a pass on the last round completes too
        (True, 0, 0, Verdict.COMPLETED),
        (False, 0, 2, Verdict.ANOTHER_ROUND),
        (False, 1, 2, Verdict.ANOTHER_ROUND),
        (False, 2, 2, Verdict.PARTIALLY_COMPLETED),  # the last round
        (False, 3, 2, Verdict.PARTIALLY_COMPLETED),  # past it (rounds lowered by a fork)
        (False, 0, 0, Verdict.PARTIALLY_COMPLETED),  # no round of fixing allowed
    ],
)
def test_verdict(passed: bool, review_round: int, max_rounds: int, expected: Verdict) -> None:
    assert verdict(passed=passed, review_round=review_round, max_review_rounds=max_rounds) == (
        expected
    )


def session(phase: SessionPhase | None, review_round: int) -> Session:
    return Session(
        id=uuid4(),
        title="t",
        initial_prompt="p",
        priority=Priority.MEDIUM,
        status=SessionState.RUNNING,
        created_at=T0,
        updated_at=T0,
        phase=phase,
        review_round=review_round,
    )


@pytest.mark.parametrize(
    ("phase", "current_round", "asked_round", "awaits"),
    [
        (SessionPhase.REVIEWING, 0, 0, True),
        (SessionPhase.REVIEWING, 1, 1, True),
        # A verdict of round 0 sent it back to work, and round 1 is reviewing now.
        (SessionPhase.REVIEWING, 1, 0, False),
        # A verdict sent it back to work.
        (SessionPhase.EXECUTING, 1, 0, False),
        (SessionPhase.EXECUTING, 0, 0, False),
        (SessionPhase.PLANNING, 0, 0, False),
        (None, 0, 0, False),
    ],
)
def test_awaits_verdict(
    phase: SessionPhase | None, current_round: int, asked_round: int, awaits: bool
) -> None:
    assert awaits_verdict(session(phase, current_round), asked_round) is awaits
