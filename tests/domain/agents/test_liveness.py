"""Liveness: when an agent that stopped heart-beating counts as gone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.agents.agent import AgentStatus
from industrial_orchestrator.domain.agents.liveness import MISSED_BEATS, is_overdue

from ..lease_builders import T0
from ..lease_builders import agent as _agent


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
