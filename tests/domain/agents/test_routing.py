"""Capability-based routing: the filters one by one, the preferences, each ranking key in
order, determinism under shuffling, and what the refusal says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, AgentStatus, new_agent
from industrial_orchestrator.domain.agents.routing import (
    SUITED_AGENT_TYPES,
    NoAgentAvailable,
    RoutingDecision,
    rank_key,
    route,
)
from industrial_orchestrator.domain.agents.tiers import Tier
from industrial_orchestrator.domain.errors import Conflict, InvalidInput
from industrial_orchestrator.domain.tasks.task import TaskType

T0 = datetime(2025, 1, 1, tzinfo=UTC)
_counter = iter(range(1, 1_000_000))


def agent(
    name: str,
    capabilities: tuple[str, ...] = ("python",),
    *,
    agent_type: str = "implementer",
    max_concurrent_tasks: int = 2,
    **changes: Any,
) -> Agent:
    made = new_agent(
        id=UUID(int=next(_counter)),
        name=name,
        agent_type=agent_type,
        capabilities=capabilities,
        kind=AgentKind.INTERNAL,
        max_concurrent_tasks=max_concurrent_tasks,
        now=T0,
    )
    return made.evolve(**changes) if changes else made


def record(successes: int, failures: int) -> dict[str, Any]:
    return {"success_count": successes, "failure_count": failures}


ELITE = record(20, 0)
ADVANCED = record(19, 1)
COMPETENT = record(8, 2)
TRAINEE = record(6, 4)
DEGRADED = record(1, 9)


def chosen_name(decision: RoutingDecision) -> str:
    return decision.chosen.name


# ---- hard filters -----------------------------------------------------------------------


def test_a_single_healthy_holder_is_chosen() -> None:
    a = agent("a")
    decision = route([a], required_capabilities=["python"])
    assert decision.chosen is a
    assert decision.considered == decision.qualified == 1
    assert decision.runners_up == []


def test_capabilities_are_compared_normalised() -> None:
    a = agent("a", ("Python", " SQL "))
    assert route([a], required_capabilities=[" python", "sql", "PYTHON"]).chosen is a


def test_every_required_capability_must_be_held() -> None:
    partial = agent("partial", ("python",))
    full = agent("full", ("python", "sql"), **record(0, 10))  # worse tier, still the only one
    assert route([partial, full], required_capabilities=["python", "sql"]).chosen is full


@pytest.mark.parametrize("status", [AgentStatus.OFFLINE, AgentStatus.BUSY])
def test_offline_and_busy_agents_are_skipped(status: AgentStatus) -> None:
    skipped = agent("skipped", status=status, **ELITE)
    fine = agent("fine")
    assert route([skipped, fine], required_capabilities=["python"]).chosen is fine


def test_a_degraded_status_agent_is_still_a_candidate() -> None:
    degraded_status = agent("a", status=AgentStatus.DEGRADED)
    assert route([degraded_status], required_capabilities=["python"]).chosen is degraded_status


def test_an_agent_at_capacity_is_skipped() -> None:
    full = agent("full", max_concurrent_tasks=2, tasks_in_progress=2, **ELITE)
    nearly = agent("nearly", max_concurrent_tasks=2, tasks_in_progress=1)
    assert route([full, nearly], required_capabilities=["python"]).chosen is nearly


def test_excluded_agents_are_skipped() -> None:
    best = agent("best", **ELITE)
    other = agent("other")
    decision = route([best, other], required_capabilities=["python"], exclude={best.id})
    assert decision.chosen is other


def test_no_required_capability_lets_every_agent_qualify() -> None:
    a, b = agent("a", ("go",)), agent("b", ("rust",))
    decision = route([b, a], required_capabilities=[])
    assert decision.chosen is a
    assert decision.qualified == 2


def test_blank_capability_and_negative_runners_up_are_invalid() -> None:
    with pytest.raises(InvalidInput):
        route([agent("a")], required_capabilities=["  "])
    with pytest.raises(InvalidInput):
        route([agent("a")], required_capabilities=["python"], runners_up=-1)


# ---- DEGRADED tier is a last resort -------------------------------------------------------


def test_degraded_tier_loses_even_when_otherwise_better() -> None:
    degraded = agent("degraded", current_load=0.0, **DEGRADED)
    trainee = agent("trainee", current_load=0.9, **TRAINEE)
    decision = route([degraded, trainee], required_capabilities=["python"])
    assert decision.chosen is trainee
    assert decision.considered == 1
    assert decision.qualified == 2
    assert decision.runners_up == []  # the DEGRADED agent was not in the ranked pool


def test_degraded_tier_is_chosen_when_nothing_else_qualifies() -> None:
    degraded = agent("degraded", **DEGRADED)
    offline = agent("offline", status=AgentStatus.OFFLINE, **ELITE)
    decision = route([offline, degraded], required_capabilities=["python"])
    assert decision.chosen is degraded
    assert decision.score.tier is Tier.DEGRADED
    assert "last resort" in decision.score.reason


# ---- ranking keys, in order ------------------------------------------------------------


def test_tier_comes_first() -> None:
    agents = [
        agent("competent", current_load=0.0, **COMPETENT),
        agent("elite", current_load=0.9, **ELITE),
        agent("trainee", current_load=0.0, **TRAINEE),
        agent("advanced", current_load=0.0, **ADVANCED),
    ]
    decision = route(agents, required_capabilities=["python"])
    assert chosen_name(decision) == "elite"
    assert [a.name for a, _ in decision.runners_up] == ["advanced", "competent", "trainee"]


def test_load_breaks_a_tier_tie() -> None:
    loaded = agent("a", current_load=0.7, **record(100, 0))  # ELITE, 100 %
    idle = agent("b", current_load=0.2, **record(97, 3))  # ELITE, 97 %: lower load wins
    assert route([loaded, idle], required_capabilities=["python"]).chosen is idle


def test_success_rate_breaks_a_load_tie() -> None:
    worse = agent("a", current_load=0.5, **record(96, 4))  # 96 %, ELITE
    better = agent("b", current_load=0.5, **record(99, 1))  # 99 %, ELITE
    assert route([worse, better], required_capabilities=["python"]).chosen is better


def test_a_known_rate_beats_no_record_at_the_same_tier() -> None:
    # Both COMPETENT (fewer than 10 finished); the one with a record, even 0 %, goes first.
    fresh = agent("a")
    short_record = agent("b", **record(0, 3))
    assert fresh.success_rate is None
    assert fresh.tier is short_record.tier is Tier.COMPETENT
    assert route([fresh, short_record], required_capabilities=["python"]).chosen is short_record


def test_least_recently_assigned_breaks_a_rate_tie() -> None:
    recent = agent("a", last_assigned_at=T0 + timedelta(hours=2), **ELITE)
    older = agent("b", last_assigned_at=T0 + timedelta(hours=1), **ELITE)
    assert route([recent, older], required_capabilities=["python"]).chosen is older
    never = agent("c", last_assigned_at=None, **ELITE)
    assert route([recent, older, never], required_capabilities=["python"]).chosen is never


def test_name_breaks_an_assignment_tie() -> None:
    b = agent("bravo", **ELITE)
    a = agent("alpha", **ELITE)
    assert route([b, a], required_capabilities=["python"]).chosen is a


def test_id_breaks_a_name_tie() -> None:
    low = agent("same", **ELITE).evolve(id=UUID(int=1))
    high = agent("same", **ELITE).evolve(id=UUID(int=2))
    assert route([high, low], required_capabilities=["python"]).chosen is low


# ---- task type preference --------------------------------------------------------------


def test_suited_agent_types_map() -> None:
    assert SUITED_AGENT_TYPES == {
        TaskType.DESIGN: "architect",
        TaskType.CODE_GENERATION: "implementer",
        TaskType.TESTING: "tester",
        TaskType.REVIEW: "reviewer",
        TaskType.SECURITY_AUDIT: "security_auditor",
        TaskType.DOCUMENTATION: "documenter",
    }


def test_a_suited_agent_is_preferred_over_a_better_ranked_one() -> None:
    elite_impl = agent("impl", agent_type="implementer", **ELITE)
    trainee_tester = agent("tester", agent_type="tester", **TRAINEE)
    decision = route(
        [elite_impl, trainee_tester], required_capabilities=["python"], task_type=TaskType.TESTING
    )
    assert decision.chosen is trainee_tester
    assert decision.type_matched
    assert decision.score.type_matched
    assert decision.considered == 1
    assert "tester suits testing" in decision.score.reason


def test_no_suited_candidate_falls_back_to_all() -> None:
    impl = agent("impl", agent_type="implementer", **ELITE)
    offline_tester = agent("tester", agent_type="tester", status=AgentStatus.OFFLINE)
    decision = route(
        [impl, offline_tester], required_capabilities=["python"], task_type=TaskType.TESTING
    )
    assert decision.chosen is impl
    assert not decision.type_matched


@pytest.mark.parametrize("task_type", [TaskType.DEPLOYMENT, TaskType.RESEARCH, None])
def test_task_types_without_a_suited_agent_type_prefer_none(task_type: TaskType | None) -> None:
    a = agent("a", agent_type="architect")
    b = agent("b", agent_type="implementer", **ELITE)
    decision = route([a, b], required_capabilities=["python"], task_type=task_type)
    assert decision.chosen is b
    assert not decision.type_matched


def test_degraded_tier_suited_agent_does_not_beat_a_healthy_tier_unsuited_one() -> None:
    degraded_tester = agent("tester", agent_type="tester", **DEGRADED)
    impl = agent("impl", agent_type="implementer")
    decision = route(
        [degraded_tester, impl], required_capabilities=["python"], task_type=TaskType.TESTING
    )
    assert decision.chosen is impl
    assert not decision.type_matched


# ---- runners-up ------------------------------------------------------------------------


def test_runners_up_follow_the_ranking_and_the_limit() -> None:
    agents = [agent(f"a{i}", current_load=i / 10, **ELITE) for i in range(6)]
    decision = route(list(reversed(agents)), required_capabilities=["python"])
    assert decision.chosen is agents[0]
    assert [a for a, _ in decision.runners_up] == agents[1:4]
    assert [s.load for _, s in decision.runners_up] == [0.1, 0.2, 0.3]
    assert decision.considered == 6
    assert route(agents, required_capabilities=["python"], runners_up=0).runners_up == []
    everyone = route(agents, required_capabilities=["python"], runners_up=10)
    assert len(everyone.runners_up) == 5


def test_score_breakdown_reports_the_keys() -> None:
    a = agent("a", current_load=0.25, last_assigned_at=T0, **ADVANCED)
    score = route([a], required_capabilities=["python"]).score
    assert score.tier is Tier.ADVANCED
    assert score.tier_rank == 1
    assert score.load == 0.25
    assert score.success_rate == pytest.approx(0.95)
    assert score.last_assigned_at == T0
    assert not score.type_matched
    assert "tier ADVANCED" in score.reason
    assert "load 0.25" in score.reason


# ---- determinism -----------------------------------------------------------------------

_names = st.sampled_from(["ada", "bob", "cy", "dee"])
_records = st.tuples(st.integers(0, 30), st.integers(0, 30))


@st.composite
def fleets(draw: st.DrawFn) -> list[Agent]:
    size = draw(st.integers(min_value=1, max_value=8))
    fleet = []
    for i in range(size):
        successes, failures = draw(_records)
        made = new_agent(
            id=UUID(int=i + 1),
            name=draw(_names),
            agent_type=draw(st.sampled_from(["implementer", "tester", "architect"])),
            capabilities=draw(
                st.lists(st.sampled_from(["python", "sql", "go"]), min_size=1, unique=True)
            ),
            kind=AgentKind.INTERNAL,
            max_concurrent_tasks=2,
            now=T0,
        )
        fleet.append(
            made.evolve(
                status=draw(st.sampled_from(list(AgentStatus))),
                tasks_in_progress=draw(st.integers(0, 2)),
                current_load=draw(st.sampled_from([0.0, 0.5, 1.0])),
                success_count=successes,
                failure_count=failures,
                last_assigned_at=draw(st.none() | st.sampled_from([T0, T0 + timedelta(minutes=1)])),
            )
        )
    return fleet


def attempt(
    fleet: list[Agent], required: list[str], task_type: TaskType | None
) -> tuple[RoutingDecision | None, tuple[str, dict[str, Any]] | None]:
    try:
        return route(fleet, required_capabilities=required, task_type=task_type), None
    except NoAgentAvailable as refused:
        return None, (refused.message, refused.details)


@settings(max_examples=200)
@given(
    fleet=fleets(),
    required=st.lists(st.sampled_from(["python", "sql"]), max_size=2),
    task_type=st.none() | st.sampled_from(list(TaskType)),
    data=st.data(),
)
def test_shuffling_never_changes_the_choice(
    fleet: list[Agent], required: list[str], task_type: TaskType | None, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(fleet))
    first, first_error = attempt(fleet, required, task_type)
    second, second_error = attempt(shuffled, required, task_type)
    if first is None or second is None:
        assert first is second is None
        assert first_error == second_error
        return
    assert second.chosen is first.chosen
    assert [a for a, _ in second.runners_up] == [a for a, _ in first.runners_up]
    # The chosen one ranks no worse than any runner-up.
    assert all(rank_key(first.chosen) < rank_key(a) for a, _ in first.runners_up)


# ---- refusals --------------------------------------------------------------------------


def refusal(agents: list[Agent], required: list[str], **kwargs: Any) -> NoAgentAvailable:
    with pytest.raises(NoAgentAvailable) as caught:
        route(agents, required_capabilities=required, **kwargs)
    return caught.value


def test_refusal_is_a_conflict_with_its_own_code() -> None:
    error = refusal([], ["python"])
    assert isinstance(error, Conflict)
    assert error.code == "no_agent_available"


def test_refusal_names_the_capability_nobody_holds() -> None:
    error = refusal([agent("a", ("python",)), agent("b", ("sql",))], ["python", "Rust", "sql"])
    assert "rust" in error.message
    assert "python" not in error.message
    assert error.details["missing_capabilities"] == ["rust"]
    assert error.details["holders"] == 0


def test_refusal_when_no_single_agent_holds_them_all() -> None:
    error = refusal([agent("a", ("python",)), agent("b", ("sql",))], ["python", "sql"])
    assert error.message == "no single agent holds all of python, sql"
    assert error.details["missing_capabilities"] == []
    assert error.details["holders"] == 0


def test_refusal_counts_why_the_holders_were_excluded() -> None:
    agents = [
        agent("o1", ("python", "sql"), status=AgentStatus.OFFLINE),
        agent("o2", ("python", "sql"), status=AgentStatus.OFFLINE),
        agent("full", ("python", "sql"), max_concurrent_tasks=1, tasks_in_progress=1),
        agent("other", ("go",)),
    ]
    error = refusal(agents, ["sql", "python"])
    assert error.message == "3 agents hold python, sql: 2 offline, 1 at capacity"
    assert error.details == {
        "required_capabilities": ["python", "sql"],
        "missing_capabilities": [],
        "excluded": {"excluded_by_request": 0, "offline": 2, "busy": 0, "at_capacity": 1},
        "holders": 3,
    }


def test_refusal_when_all_holders_are_busy_or_excluded() -> None:
    busy = agent("busy", status=AgentStatus.BUSY)
    excluded = agent("excluded")
    error = refusal([busy, excluded], ["python"], exclude=[excluded.id])
    assert error.message == "2 agents hold python: 1 excluded by request, 1 busy"
    assert error.details["excluded"] == {
        "excluded_by_request": 1,
        "offline": 0,
        "busy": 1,
        "at_capacity": 0,
    }


def test_refusal_with_one_holder_at_capacity() -> None:
    error = refusal([agent("a", max_concurrent_tasks=1, tasks_in_progress=1)], ["python"])
    assert error.message == "1 agent holds python: 1 at capacity"


def test_refusal_with_no_agents_at_all() -> None:
    assert refusal([], []).message == "no agent is registered"
    assert refusal([], ["python"]).details["missing_capabilities"] == ["python"]
