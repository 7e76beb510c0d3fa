"""Lease rules, case by case: who may take a lease, what taking one and ending one books
on the agent, who holds it, and how long it lasts."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.agents.agent import AgentStatus
from industrial_orchestrator.domain.errors import Conflict
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome, LeaseLost
from industrial_orchestrator.domain.tasks.lease_rules import (
    UNKNOWN_LEASE_GRACE_SECONDS,
    AgentNotAccepting,
    agent_after_attempt,
    agent_with_lease,
    check_accepting,
    check_holder,
    effective_expiry,
    lease_task,
    restart_grace_until,
    unknown_leases,
)
from industrial_orchestrator.domain.tasks.task import TaskStatus, task_transition

from ..lease_builders import T0
from ..lease_builders import agent as _agent
from ..lease_builders import ready_task as _ready


@pytest.mark.parametrize(
    ("status", "in_progress", "refused"),
    [
        (AgentStatus.HEALTHY, 0, None),
        (AgentStatus.DEGRADED, 1, None),
        (AgentStatus.OFFLINE, 0, "offline"),
        (AgentStatus.BUSY, 0, "busy"),
        (AgentStatus.HEALTHY, 2, "holds 2 of its 2"),
        (AgentStatus.DEGRADED, 3, "holds 3 of its 2"),
    ],
)
def test_an_agent_takes_a_lease_only_online_and_below_its_capacity(status, in_progress, refused):
    agent = _agent(status=status, tasks_in_progress=in_progress)
    if refused is None:
        assert check_accepting(agent) is None
        return
    with pytest.raises(AgentNotAccepting, match=refused) as caught:
        check_accepting(agent)
    assert caught.value.code == "agent_not_accepting"
    assert caught.value.details["agent_id"] == str(agent.id)


def test_leasing_starts_the_next_attempt_and_runs_the_task():
    agent = _agent()
    task = _ready()
    running, attempt = lease_task(task, agent, now=T0, lease_seconds=90)
    assert (running.status, running.attempt, running.version) == ("RUNNING", 1, task.version + 1)
    assert (attempt.attempt, attempt.agent_id, attempt.is_open) == (1, agent.id, True)
    assert (attempt.leased_at, attempt.expires_at) == (T0, T0 + timedelta(seconds=90))


@pytest.mark.parametrize(
    "status", [TaskStatus.RUNNING, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED]
)
def test_only_a_ready_task_is_leased(status):
    task = _ready()
    running, _ = lease_task(task, _agent(), now=T0, lease_seconds=90)
    moved = running if status == TaskStatus.RUNNING else task_transition(running, status, now=T0)
    with pytest.raises(Conflict, match="only a READY task"):
        lease_task(moved, _agent(), now=T0, lease_seconds=90)


HOLDER, OTHER = _agent(), _agent()
RUNNING, ATTEMPT = lease_task(_ready(), HOLDER, now=T0, lease_seconds=90)


@pytest.mark.parametrize(
    ("task", "current", "agent_id", "claimed", "refused"),
    [
        (RUNNING, ATTEMPT, HOLDER.id, None, None),
        (RUNNING, ATTEMPT, HOLDER.id, 1, None),
        (RUNNING, ATTEMPT, HOLDER.id, 2, "Attempt 2 of task .* is over"),
        (RUNNING, None, HOLDER.id, None, "is not leased"),
        (RUNNING, ATTEMPT.evolve(outcome=AttemptOutcome.EXPIRED), HOLDER.id, 1, "is not leased"),
        (
            task_transition(RUNNING, TaskStatus.CANCELLED, now=T0),
            ATTEMPT,
            HOLDER.id,
            1,
            "is not leased",
        ),
        (RUNNING, ATTEMPT, OTHER.id, None, "leased to another agent"),
    ],
)
def test_only_the_holder_of_the_current_open_attempt_may_act(
    task, current, agent_id, claimed, refused
):
    if refused is None:
        assert check_holder(task, current, agent_id, claimed) is current
        return
    with pytest.raises(LeaseLost, match=refused):
        check_holder(task, current, agent_id, claimed)


@pytest.mark.parametrize(
    ("in_progress", "busy", "load"),
    [(0, 1, 0.5), (1, 2, 1.0), (2, 3, 1.0)],
)
def test_a_lease_counts_one_more_task_on_the_agent(in_progress, busy, load):
    agent = _agent(tasks_in_progress=in_progress)
    leased = agent_with_lease(agent, now=T0 + timedelta(seconds=5))
    assert (leased.tasks_in_progress, leased.current_load) == (busy, load)
    assert leased.last_assigned_at == T0 + timedelta(seconds=5)
    assert leased.version == agent.version + 1


@pytest.mark.parametrize(
    ("outcome", "on_record", "successes", "failures"),
    [
        (AttemptOutcome.COMPLETED, True, 1, 0),
        (AttemptOutcome.FAILED, True, 0, 1),
        (AttemptOutcome.EXPIRED, True, 0, 1),
        (AttemptOutcome.RELEASED, True, 0, 1),
        (AttemptOutcome.COMPLETED, False, 0, 0),
        (AttemptOutcome.EXPIRED, False, 0, 0),
    ],
)
def test_the_end_of_an_attempt_counts_one_task_fewer_and_books_its_outcome(
    outcome, on_record, successes, failures
):
    agent = _agent(tasks_in_progress=2, current_load=1.0)
    after = agent_after_attempt(agent, outcome, on_record=on_record)
    assert (after.tasks_in_progress, after.current_load) == (1, 0.5)
    assert (after.success_count, after.failure_count) == (successes, failures)
    assert after.version == agent.version + 1


def test_an_agent_never_counts_fewer_than_no_tasks():
    after = agent_after_attempt(_agent(tasks_in_progress=0), AttemptOutcome.COMPLETED)
    assert (after.tasks_in_progress, after.current_load) == (0, 0.0)


@pytest.mark.parametrize(
    ("grace_after_lease", "expiry_after_lease"),
    [(-3600.0, 90.0), (0.0, 90.0), (90.0, 90.0), (3600.0, 3600.0)],
)
def test_leases_never_expire_within_the_grace_after_a_restart(
    grace_after_lease, expiry_after_lease
):
    _, attempt = lease_task(_ready(), _agent(), now=T0, lease_seconds=90)
    grace_until = T0 + timedelta(seconds=grace_after_lease)
    assert effective_expiry(attempt, grace_until=grace_until) == T0 + timedelta(
        seconds=expiry_after_lease
    )


def test_the_restart_grace_lasts_one_lease():
    assert restart_grace_until(T0, 90.0) == T0 + timedelta(seconds=90)


@pytest.mark.parametrize(
    ("held_for", "listed", "let_go"),
    [
        (UNKNOWN_LEASE_GRACE_SECONDS + 1, False, True),
        (UNKNOWN_LEASE_GRACE_SECONDS, False, True),
        (UNKNOWN_LEASE_GRACE_SECONDS - 1, False, False),
        (UNKNOWN_LEASE_GRACE_SECONDS + 1, True, False),
        (0.0, True, False),
    ],
)
def test_a_lease_the_agent_does_not_list_is_let_go_after_the_grace(held_for, listed, let_go):
    _, attempt = lease_task(_ready(), _agent(), now=T0, lease_seconds=90)
    now = T0 + timedelta(seconds=held_for)
    names = [attempt.task_id] if listed else [uuid4()]
    assert unknown_leases([attempt], names, now=now) == ([attempt] if let_go else [])
