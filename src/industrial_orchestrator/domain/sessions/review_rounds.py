"""The verification rounds of a session whose plan is done: what a verdict of its
``verify_command`` leads to, and whether a verdict is still awaited.

A pass completes the session. A failure sends it back to work (a task to fix what the
command found) while review rounds are left; on the last round it ends PARTIALLY_COMPLETED:
every task is done, but the work does not pass.
"""

from __future__ import annotations

from enum import StrEnum

from .session import Session, SessionPhase


class Verdict(StrEnum):
    COMPLETED = "completed"
    ANOTHER_ROUND = "another_round"
    PARTIALLY_COMPLETED = "partially_completed"


def verdict(*, passed: bool, review_round: int, max_review_rounds: int) -> Verdict:
    """What the verification of round ``review_round`` leads to."""
    if passed:
        return Verdict.COMPLETED
    if review_round >= max_review_rounds:
        return Verdict.PARTIALLY_COMPLETED
    return Verdict.ANOTHER_ROUND


def awaits_verdict(session: Session, review_round: int) -> bool:
    """Whether the session still waits for round ``review_round``'s verdict: it is
    reviewing, and no verdict of that round moved it on (another replica's, or an
    operator's action, may have)."""
    return session.phase == SessionPhase.REVIEWING and session.review_round == review_round
