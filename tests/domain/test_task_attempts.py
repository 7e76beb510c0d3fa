"""Leases as pure rules: taking one, fencing results, losing one, liveness and grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.agent_liveness import MISSED_BEATS, is_overdue
from industrial_orchestrator.domain.agents import AgentKind, AgentStatus, new_agent
from industrial_orchestrator.domain.errors import Conflict
from industrial_orchestrator.domain.task_attempts import (
    AttemptOutcome,
    LeaseLost,
    agent_after_attempt,
    agent_with_lease,
    check_holder,
    effective_expiry,
    end_lost_attempt,
    lease_task,
)
from industrial_orchestrator.domain.tasks import TaskStatus, TaskType, new_task, task_transition

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _agent(**changes):
    agent = new_agent(
        id=uuid4(),
        name="a",
        agent_type="implementer",
        capabilities=["python"],
        kind=AgentKind.EXTERNAL,
        max_concurrent_tasks=2,
        now=T0,
    )
    return agent.evolve(**changes)


def _ready():
    task = new_task(
        id=uuid4(),
        title="t",
        description="",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["python"],
        estimated_effort=1,
        now=T0,
    )
    return task_transition(task, TaskStatus.READY, now=T0)


def test_leasing_starts_the_next_attempt_and_runs_the_task():
    agent = _agent()
    task = _ready()
    running, attempt = lease_task(task, agent, now=T0, lease_seconds=90)
    assert (running.status, running.attempt, running.version) == ("RUNNING", 1, task.version + 1)
    assert (attempt.attempt, attempt.agent_id, attempt.is_open) == (1, agent.id, True)
    assert attempt.expires_at == T0 + timedelta(seconds=90)
    with pytest.raises(Conflict):
        lease_task(running, agent, now=T0, lease_seconds=90)


def test_only_the_holder_of_the_current_open_attempt_may_report():
    holder, other = _agent(), _agent()
    running, attempt = lease_task(_ready(), holder, now=T0, lease_seconds=90)
    assert check_holder(running, attempt, holder.id, None) is attempt
    assert check_holder(running, attempt, holder.id, 1) is attempt
    refusals = [
        (running, attempt, other.id, None),  # someone else's lease
        (running, attempt, holder.id, 2),  # an attempt that does not exist yet
        (running, attempt.evolve(outcome=AttemptOutcome.EXPIRED), holder.id, 1),  # over
        (running, None, holder.id, None),  # never leased
        (task_transition(running, TaskStatus.CANCELLED, now=T0), attempt, holder.id, 1),
    ]
    for task, current, agent_id, claimed in refusals:
        with pytest.raises(LeaseLost):
            check_holder(task, current, agent_id, claimed)


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


def test_leases_never_expire_within_the_grace_after_a_restart():
    _, attempt = lease_task(_ready(), _agent(), now=T0, lease_seconds=90)
    restarted = T0 + timedelta(hours=1)
    assert effective_expiry(attempt, grace_until=T0) == attempt.expires_at
    assert effective_expiry(attempt, grace_until=restarted) == restarted


def test_agent_bookkeeping_of_leases_and_outcomes():
    agent = _agent()
    busy = agent_with_lease(agent, now=T0)
    assert (busy.tasks_in_progress, busy.current_load, busy.last_assigned_at) == (1, 0.5, T0)
    done = agent_after_attempt(busy, AttemptOutcome.COMPLETED)
    assert (done.tasks_in_progress, done.success_count, done.failure_count) == (0, 1, 0)
    for lost in (AttemptOutcome.FAILED, AttemptOutcome.EXPIRED, AttemptOutcome.RELEASED):
        after = agent_after_attempt(busy, lost)
        assert (after.success_count, after.failure_count) == (0, 1)
    spared = agent_after_attempt(busy, AttemptOutcome.EXPIRED, on_record=False)
    assert (spared.success_count, spared.failure_count, spared.tasks_in_progress) == (0, 0, 0)
    assert agent_after_attempt(agent, AttemptOutcome.COMPLETED).tasks_in_progress == 0
    assert done.version == busy.version + 1


@pytest.mark.parametrize(
    ("silent_for", "overdue"),
    [(0.0, False), (89.999, False), (90.0, False), (90.001, True), (500.0, True)],
)
def test_an_agent_is_overdue_after_more_than_three_missed_beats(silent_for, overdue):
    agent = _agent(last_heartbeat=T0)
    now = T0 + timedelta(seconds=silent_for)
    assert MISSED_BEATS == 3
    assert is_overdue(agent, now=now, heartbeat_seconds=30, started_at=T0 - timedelta(days=1)) is (
        overdue
    )


def test_offline_agents_are_never_overdue_again():
    agent = _agent(last_heartbeat=T0, status=AgentStatus.OFFLINE)
    assert not is_overdue(agent, now=T0 + timedelta(days=1), heartbeat_seconds=1, started_at=T0)


@given(
    down_for=st.floats(min_value=0, max_value=10_000),
    since_start=st.floats(min_value=0, max_value=200),
)
def test_the_orchestrators_start_counts_as_a_sighting(down_for, since_start):
    """However long the orchestrator was down, nobody is reaped within three beats of its
    start; after that, the silent ones are."""
    agent = _agent(last_heartbeat=T0)
    started = T0 + timedelta(seconds=down_for)
    now = started + timedelta(seconds=since_start)
    expected = (now - max(T0, started)).total_seconds() > 90
    assert is_overdue(agent, now=now, heartbeat_seconds=30, started_at=started) is expected
    if since_start <= 90:
        assert not is_overdue(agent, now=now, heartbeat_seconds=30, started_at=started)
