"""How an attempt ends, case by case: what a result and a lost lease do to the task."""

from __future__ import annotations

import pytest

from industrial_orchestrator.domain.tasks.attempts import (
    AttemptOutcome,
    after_result,
    end_lost_attempt,
    result_summary,
)
from industrial_orchestrator.domain.tasks.lease_rules import lease_task
from industrial_orchestrator.domain.tasks.task import TaskStatus, task_transition

from ..lease_builders import T0
from ..lease_builders import agent as _agent
from ..lease_builders import ready_task as _ready


def _on_attempt(number):
    """A RUNNING task on attempt ``number``, with its open attempt."""
    task = _ready()
    for _ in range(number - 1):
        running, _ = lease_task(task, _agent(), now=T0, lease_seconds=1)
        failed = task_transition(running, TaskStatus.FAILED, now=T0, summary="x")
        task = task_transition(failed, TaskStatus.READY, now=T0)
    return lease_task(task, _agent(), now=T0, lease_seconds=1)


@pytest.mark.parametrize(
    ("number", "max_attempts", "final", "error", "statuses", "summary"),
    [
        (1, 3, False, "boom", ["FAILED", "READY"], "attempt 1 failed: boom"),
        (1, 3, False, None, ["FAILED", "READY"], "attempt 1 failed: the agent reported a failure"),
        (2, 3, False, "boom", ["FAILED", "READY"], "attempt 2 failed: boom"),
        (3, 3, False, "boom", ["FAILED"], "attempt 3 failed: boom"),
        (1, 3, True, "looping", ["FAILED"], "attempt 1 failed: looping"),
    ],
)
def test_a_failed_result_requeues_until_attempts_run_out_unless_final(
    number, max_attempts, final, error, statuses, summary
):
    running, attempt = _on_attempt(number)
    closed = attempt.evolve(outcome=AttemptOutcome.FAILED, finished_at=T0, error=error)
    states = after_result(running, closed, now=T0, max_attempts=max_attempts, final=final)
    assert [s.status for s in states] == statuses
    assert states[0].result_summary == summary


@pytest.mark.parametrize("final", [False, True])
def test_a_completed_result_completes_the_task(final):
    running, attempt = _on_attempt(3)
    closed = attempt.evolve(
        outcome=AttemptOutcome.COMPLETED, finished_at=T0, output={"summary": " done "}
    )
    states = after_result(running, closed, now=T0, max_attempts=3, final=final)
    assert [(s.status, s.result_summary) for s in states] == [(TaskStatus.COMPLETED, "done")]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ({"summary": "  added the parser\n"}, "added the parser"),
        ({"summary": "x" * 3000}, "x" * 2000),
        ({"summary": "   "}, None),
        ({"summary": 42}, None),
        ({"other": "y"}, None),
        ({}, None),
    ],
)
def test_a_completed_attempt_is_summed_up_by_its_own_summary_or_by_who_did_it(output, expected):
    _, attempt = _on_attempt(2)
    done = attempt.evolve(outcome=AttemptOutcome.COMPLETED, output=output)
    fallback = f"completed by agent {attempt.agent_id} on attempt 2"
    assert result_summary(done) == (expected if expected is not None else fallback)


def test_a_lost_attempt_requeues_until_attempts_run_out():
    agent = _agent()
    running, attempt = lease_task(_ready(), agent, now=T0, lease_seconds=1)
    states, closed = end_lost_attempt(
        running, attempt, AttemptOutcome.EXPIRED, reason="silent", now=T0, max_attempts=2
    )
    assert [s.status for s in states] == [TaskStatus.FAILED, TaskStatus.READY]
    assert (closed.outcome, closed.error, closed.finished_at) == ("expired", "silent", T0)
    assert "back in the queue" in (states[0].result_summary or "")
    second, attempt2 = lease_task(states[-1], agent, now=T0, lease_seconds=1)
    assert second.attempt == 2
    states, _ = end_lost_attempt(
        second, attempt2, AttemptOutcome.RELEASED, reason="left", now=T0, max_attempts=2
    )
    assert [s.status for s in states] == [TaskStatus.FAILED]
    assert "failed after 2 of 2 attempts" in (states[0].result_summary or "")


def test_a_lost_attempt_of_a_task_moved_on_changes_nothing_but_the_attempt():
    running, attempt = lease_task(_ready(), _agent(), now=T0, lease_seconds=1)
    cancelled = task_transition(running, TaskStatus.CANCELLED, now=T0)
    states, closed = end_lost_attempt(
        cancelled, attempt, AttemptOutcome.EXPIRED, reason="x", now=T0, max_attempts=3
    )
    assert states == []
    assert closed.outcome == AttemptOutcome.EXPIRED
    with pytest.raises(ValueError, match="not a lost attempt"):
        end_lost_attempt(
            running, attempt, AttemptOutcome.COMPLETED, reason="x", now=T0, max_attempts=3
        )
