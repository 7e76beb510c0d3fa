"""Which events of the log call for a step of their session, or a look at the sessions
that wait for agents."""

from __future__ import annotations

from uuid import uuid4

import pytest

from industrial_orchestrator.domain.agents import events as agent_events
from industrial_orchestrator.domain.agents.agent import AgentStatus
from industrial_orchestrator.domain.events import EventType, LogStream, log_lines
from industrial_orchestrator.domain.sessions.stepping import (
    FLEET_EVENTS,
    SESSION_EVENTS,
    steps_called_by,
    touched_by,
)
from industrial_orchestrator.domain.tasks import events as task_events
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome, after_result
from industrial_orchestrator.domain.tasks.lease_rules import lease_task

from ..lease_builders import T0, agent, ready_task

A, B = uuid4(), uuid4()


@pytest.mark.parametrize(
    ("kind", "steps", "fleet"),
    [
        (EventType.SESSION_TRANSITION, True, False),
        (EventType.SESSION_PHASE, True, False),
        (EventType.TASK_TRANSITION, True, False),
        (EventType.TASK_CREATED, True, False),
        (EventType.TASK_ATTEMPT_ENDED, True, False),
        (EventType.TASK_LOOP_STOPPED, True, False),
        (EventType.TASK_HELD_UP, True, False),
        (EventType.SESSION_LOG, False, False),
        (EventType.SESSION_TELEMETRY, False, False),
        (EventType.CHECKPOINT_CREATED, False, False),
        (EventType.CONTEXT_UPDATED, False, False),
        (EventType.AGENT_STATUS_CHANGED, False, True),
        (EventType.AGENT_REGISTERED, False, True),
    ],
)
def test_each_kind_of_event(kind: EventType, steps: bool, fleet: bool) -> None:
    touched = touched_by([(A, kind, None, None)])
    assert touched.sessions == (frozenset({A}) if steps else frozenset())
    assert touched.fleet_changed is fleet


def test_many_events_name_each_session_once_and_skip_global_ones() -> None:
    touched = touched_by(
        [
            (A, EventType.TASK_TRANSITION, "COMPLETED", None),
            (A, EventType.TASK_LEASED, None, None),
            (B, EventType.SESSION_LOG, None, None),
            (None, EventType.TASK_TRANSITION, "COMPLETED", None),  # a task of no session
            (B, EventType.SESSION_TRANSITION, "PAUSED", None),
        ]
    )
    assert touched.sessions == frozenset({A, B})
    assert not touched.fleet_changed


def test_no_event_kind_is_both() -> None:
    assert not SESSION_EVENTS & FLEET_EVENTS


@pytest.mark.parametrize(
    ("to", "steps"),
    [
        ("READY", True),
        ("COMPLETED", True),
        ("FAILED", True),
        ("CANCELLED", True),
        ("RUNNING", False),
    ],
)
def test_a_lease_alone_calls_for_no_step(to: str, steps: bool) -> None:
    # READY -> RUNNING is an agent taking the task: its result will be the next event.
    assert bool(touched_by([(A, EventType.TASK_TRANSITION, to, None)]).sessions) is steps
    # A session whose state is RUNNING again (resumed) is stepped all the same.
    assert touched_by([(A, EventType.SESSION_TRANSITION, "RUNNING", None)]).sessions == {A}


@pytest.mark.parametrize(
    ("events", "routine"),
    [
        # A result that leaves the plan going: the task done, what waited for it READY.
        ([(EventType.TASK_ATTEMPT_ENDED, None), (EventType.TASK_TRANSITION, "COMPLETED")], True),
        ([(EventType.TASK_TRANSITION, "COMPLETED"), (EventType.TASK_TRANSITION, "READY")], True),
        # A failed attempt whose task is READY again.
        ([(EventType.TASK_ATTEMPT_ENDED, None), (EventType.TASK_TRANSITION, "READY")], True),
        # Anything else in the same stretch is stepped at once.
        ([(EventType.TASK_TRANSITION, "COMPLETED"), (EventType.TASK_TRANSITION, "FAILED")], False),
        (
            [(EventType.TASK_TRANSITION, "COMPLETED"), (EventType.SESSION_TRANSITION, "PAUSED")],
            False,
        ),
        ([(EventType.TASK_CREATED, None)], False),
        ([(EventType.SESSION_PHASE, None)], False),
        ([(EventType.TASK_LOOP_STOPPED, None)], False),
        ([(EventType.TASK_HELD_UP, None)], False),
        ([(EventType.TASK_TRANSITION, "CANCELLED")], False),
    ],
)
def test_only_results_that_leave_the_plan_going_are_routine(
    events: list[tuple[EventType, str | None]], routine: bool
) -> None:
    touched = touched_by(
        [(A, kind, to, None) for kind, to in events] + [(B, EventType.TASK_CREATED, None, None)]
    )
    assert touched.sessions == {A, B}
    assert touched.routine == ({A} if routine else set())


@pytest.mark.parametrize(
    ("kind", "to", "came_from", "changed"),
    [
        (EventType.AGENT_REGISTERED, None, None, True),
        (EventType.AGENT_DEREGISTERED, None, None, True),
        (EventType.AGENT_STATUS_CHANGED, "offline", "healthy", True),
        (EventType.AGENT_STATUS_CHANGED, "healthy", "offline", True),
        (EventType.AGENT_STATUS_CHANGED, "busy", "healthy", False),
        (EventType.AGENT_STATUS_CHANGED, "degraded", "busy", False),
        (EventType.AGENT_STATUS_CHANGED, "healthy", None, True),  # it does not say: counted
        (EventType.AGENT_TIER_CHANGED, "DEGRADED", "TRAINEE", True),
        (EventType.AGENT_TIER_CHANGED, "TRAINEE", "DEGRADED", True),
        (EventType.AGENT_TIER_CHANGED, "COMPETENT", "TRAINEE", False),
        (EventType.AGENT_TIER_CHANGED, "ELITE", "ADVANCED", False),
    ],
)
def test_only_what_a_sessions_health_depends_on_changes_the_fleet(
    kind: EventType, to: str | None, came_from: str | None, changed: bool
) -> None:
    """Health: capable agents online for the READY tasks, not all of them DEGRADED-tier."""
    assert touched_by([(None, kind, to, came_from)]).fleet_changed is changed


def test_a_commit_names_the_sessions_its_events_call_to_step_as_the_log_would() -> None:
    """What a wake-up names (``steps_called_by``): a lease and a log line call for no
    step, a result does; an agent going offline changes the fleet, which names none (a
    look finds the sessions waiting on agents)."""
    worker = agent()
    task = ready_task().evolve(session_id=A)
    running, attempt = lease_task(task, worker, now=T0, lease_seconds=60)
    lease = [task_events.task_transition(task, running), task_events.task_leased(running, attempt)]
    assert steps_called_by(lease) == frozenset()
    assert steps_called_by(log_lines(B, LogStream.STDOUT, "working\n", T0)) == frozenset()
    closed = attempt.evolve(outcome=AttemptOutcome.COMPLETED, finished_at=T0)
    [done] = after_result(running, closed, now=T0, max_attempts=3)
    result = [
        task_events.task_attempt_ended(running, closed),
        task_events.task_transition(running, done),
    ]
    assert steps_called_by([*lease, *result]) == frozenset({A})
    offline = agent_events.agent_status_changed(
        worker.evolve(status=AgentStatus.OFFLINE), AgentStatus.HEALTHY, T0
    )
    assert steps_called_by([*result, offline]) is None
    # Between online states an agent changes nothing a session's health depends on.
    busy = agent_events.agent_status_changed(
        worker.evolve(status=AgentStatus.BUSY), AgentStatus.HEALTHY, T0
    )
    assert steps_called_by([*result, busy]) == frozenset({A})
