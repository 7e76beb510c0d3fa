"""Who may take a task again after the loop guard stopped agents on it."""

from __future__ import annotations

from uuid import UUID, uuid4

from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.tasks.loop_reroute import barred_agents

A, B, C = uuid4(), uuid4(), uuid4()


def test_a_stopped_agent_is_barred_while_another_capable_one_was_not_stopped() -> None:
    assert barred_agents({A}, [A, B]) == {A}


def test_once_every_capable_agent_was_stopped_nobody_is_barred() -> None:
    assert barred_agents({A, B}, [A, B]) == frozenset()


def test_a_stopped_agent_alone_is_not_barred() -> None:
    assert barred_agents({A}, [A]) == frozenset()


def test_an_agent_gone_since_does_not_keep_the_others_barred() -> None:
    # B was stopped too and has since gone offline: only C may do it.
    assert barred_agents({A, B}, [A, C]) == {A, B}
    assert barred_agents({A, B}, [A]) == frozenset()


def test_nothing_stopped_bars_nobody() -> None:
    assert barred_agents(set(), [A, B]) == frozenset()


_ids = st.sets(st.sampled_from([A, B, C]))


@given(_ids, _ids)
def test_somebody_capable_may_always_take_the_task(stopped: set[UUID], capable: set[UUID]) -> None:
    barred = barred_agents(stopped, capable)
    assert barred <= stopped
    if capable:
        assert capable - barred, "the task never waits for nobody"
