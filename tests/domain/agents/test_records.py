"""Learned routing: records per (agent, task type), how they rank an agent pool inside the
tier rules, and when a claimer leaves a task to a clearly better idle agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, AgentStatus, new_agent
from industrial_orchestrator.domain.agents.records import (
    MAX_WAIT,
    MIN_SAMPLES,
    AgentRecord,
    FinishedAttempt,
    duration_ms,
    learned_keys,
    may_leave,
    summarise,
    tasks_to_leave,
)
from industrial_orchestrator.domain.agents.routing import NoAgentAvailable, route
from industrial_orchestrator.domain.tasks.task import Task, TaskStatus, TaskType

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TESTING = TaskType.TESTING
CODE = TaskType.CODE_GENERATION


def agent(name: str, number: int, **changes: Any) -> Agent:
    made = new_agent(
        id=UUID(int=number),
        name=name,
        agent_type="implementer",
        capabilities=("python",),
        kind=AgentKind.EXTERNAL,
        max_concurrent_tasks=2,
        now=T0,
    )
    return made.evolve(**changes) if changes else made


def rec(
    who: Agent,
    successes: int,
    attempts: int,
    *,
    cost: float = 0.01,
    median: int | None = 1000,
    task_type: TaskType = TESTING,
) -> AgentRecord:
    return AgentRecord(who.id, task_type, attempts, successes, median, cost)


def finished(who: Agent, ok: bool, ms: int | None = 100, cost: float = 0.0, **kw: Any) -> Any:
    return FinishedAttempt(who.id, kw.get("task_type", TESTING), ok, ms, cost)


def chosen(pool: list[Agent], *records: AgentRecord, task_type: TaskType = TESTING) -> str:
    decision = route(
        pool,
        required_capabilities=["python"],
        task_type=task_type,
        records={r.agent_id: r for r in records},
    )
    return decision.chosen.name


# ---- the record --------------------------------------------------------------------------


def test_a_record_counts_attempts_successes_median_of_successes_and_mean_cost() -> None:
    a, b = agent("a", 1), agent("b", 2)
    records = summarise(
        [
            finished(a, True, 100, 0.02),
            finished(a, True, 300, 0.02),
            finished(a, True, 200, 0.02),
            finished(a, False, 9000, 0.06),  # a failure's time is not a duration; its cost is
            finished(a, True, 100, 0.0, task_type=CODE),
            finished(b, False, None, 0.0),
        ]
    )
    testing = records[(a.id, TESTING)]
    assert (testing.attempts, testing.successes) == (4, 3)
    assert testing.success_rate == 0.75
    assert testing.median_duration_ms == 200
    assert testing.mean_cost_usd == pytest.approx(0.03)
    assert testing.counts
    assert records[(a.id, CODE)].attempts == 1
    assert not records[(a.id, CODE)].counts
    nothing_done = records[(b.id, TESTING)]
    assert (nothing_done.success_rate, nothing_done.median_duration_ms) == (0.0, None)


def test_an_even_number_of_durations_has_the_middle_two_averaged() -> None:
    a = agent("a", 1)
    [record] = summarise([finished(a, True, ms) for ms in (100, 200, 400, 1000)]).values()
    assert record.median_duration_ms == 300


def test_duration_is_the_reported_time_else_lease_to_result() -> None:
    assert duration_ms(1500, T0, T0 + timedelta(seconds=9)) == 1500
    assert duration_ms(None, T0, T0 + timedelta(seconds=2.5)) == 2500
    assert duration_ms(None, T0, None) is None
    assert duration_ms(-5, T0, T0) == 0


def test_a_record_counts_from_the_minimum_sample() -> None:
    a = agent("a", 1)
    assert not rec(a, MIN_SAMPLES - 1, MIN_SAMPLES - 1).counts
    assert rec(a, 0, MIN_SAMPLES).counts
    assert "too short" in rec(a, 1, 1).describe()
    assert "3/4 succeeded" in rec(a, 3, 4).describe()


# ---- ranking -----------------------------------------------------------------------------


def test_the_better_record_for_the_task_type_wins_over_tier_and_load() -> None:
    # "good" is worse by every rule of the tiers (a short record, busier): its testing
    # record decides all the same.
    star = agent("star", 1, success_count=20, failure_count=0)
    good = agent("good", 2, current_load=0.5, tasks_in_progress=1)
    assert chosen([star, good]) == "star"  # no record for the type: the tiers decide
    assert chosen([star, good], rec(star, 1, 4), rec(good, 4, 4)) == "good"
    # For another type, the other record.
    assert (
        chosen(
            [star, good],
            rec(star, 4, 4, task_type=CODE),
            rec(good, 0, 4, task_type=CODE),
            task_type=CODE,
        )
        == "star"
    )


def test_success_rate_first_then_cost_then_duration() -> None:
    a, b = agent("a", 1), agent("b", 2)
    # 100 % beats 80 % even at ten times the cost.
    assert chosen([a, b], rec(a, 4, 5, cost=0.01), rec(b, 5, 5, cost=0.10)) == "b"
    # The same band (95 % up to 100 %): the cheaper one.
    assert chosen([a, b], rec(a, 19, 20, cost=0.01), rec(b, 20, 21, cost=0.02)) == "a"
    assert chosen([a, b], rec(a, 19, 20, cost=0.01), rec(b, 20, 20, cost=0.02)) == "b"
    # Same band and cost: the faster one.
    assert chosen([a, b], rec(a, 5, 5, median=900), rec(b, 5, 5, median=800)) == "b"
    # No successful duration at all ranks after a known one.
    assert chosen([a, b], rec(a, 0, 5, median=None), rec(b, 0, 5, median=5000)) == "b"


def test_equal_records_leave_the_decision_to_the_tier_rules() -> None:
    a = agent("a", 1, current_load=0.5, tasks_in_progress=1)
    b = agent("b", 2)
    assert chosen([a, b], rec(a, 3, 3), rec(b, 3, 3)) == "b"  # lower load


def test_short_records_are_shown_but_not_used() -> None:
    a = agent("a", 1)
    b = agent("b", 2, current_load=0.5, tasks_in_progress=1)
    decision = route(
        [a, b],
        required_capabilities=["python"],
        task_type=TESTING,
        records={a.id: rec(a, 0, 2), b.id: rec(b, 2, 2)},
    )
    assert decision.chosen.name == "a"
    assert decision.score.learned is False
    assert decision.score.record == rec(a, 0, 2)
    assert "too short" in decision.score.reason


def test_an_agent_without_a_record_ranks_as_the_average() -> None:
    strong, weak = agent("strong", 1), agent("weak", 2)
    newcomer = agent("new", 3, current_load=0.5, tasks_in_progress=1)
    records = {r.agent_id: r for r in (rec(strong, 5, 5), rec(weak, 1, 5))}
    keys = learned_keys([strong, weak, newcomer], records)
    assert keys[strong.id] < keys[newcomer.id] < keys[weak.id]
    decision = route(
        [weak, newcomer, strong],
        required_capabilities=["python"],
        task_type=TESTING,
        records=records,
    )
    assert [decision.chosen.name, *(a.name for a, _ in decision.runners_up)] == [
        "strong",
        "new",  # ahead of a known bad one, busier though it is
        "weak",
    ]
    assert decision.score.learned
    assert "testing record 5/5 succeeded" in decision.score.reason
    assert "ranked as the average testing record" in decision.runners_up[0][1].reason
    # Alone with one known agent, a newcomer ties with it: the tier rules decide (load).
    assert chosen([weak, newcomer], *records.values()) == "weak"


def test_records_never_lift_an_agent_over_the_tier_floor() -> None:
    # A DEGRADED-tier agent is a last resort, whatever its record for the type.
    fallen = agent("fallen", 1, success_count=1, failure_count=9)
    plain = agent("plain", 2)
    assert chosen([fallen, plain], rec(fallen, 10, 10), rec(plain, 0, 10)) == "plain"
    assert chosen([fallen], rec(fallen, 10, 10)) == "fallen"
    # Nor does it bring in an agent the hard filters leave out.
    busy = agent("busy", 3, status=AgentStatus.BUSY)
    assert chosen([busy, plain], rec(busy, 10, 10), rec(plain, 0, 10)) == "plain"
    with pytest.raises(NoAgentAvailable):
        chosen([busy], rec(busy, 10, 10))


def test_no_records_at_all_means_no_learned_keys() -> None:
    a, b = agent("a", 1), agent("b", 2)
    assert learned_keys([a, b], {}) == {}
    assert learned_keys([a, b], {a.id: rec(a, 1, 1)}) == {}


_fleet_records = st.lists(
    st.tuples(
        st.integers(0, 12),  # successes
        st.integers(0, 12),  # failures
        st.sampled_from([0.0, 0.01, 0.05]),
        st.sampled_from([None, 100, 2000]),
        st.booleans(),  # has a record at all
        st.sampled_from([(0, 0), (20, 0), (1, 9)]),  # overall tier record
        st.sampled_from([0.0, 0.5]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300)
@given(fleet=_fleet_records)
def test_the_choice_stays_in_the_tier_pool_and_has_the_best_record_key(
    fleet: list[tuple[int, int, float, int | None, bool, tuple[int, int], float]],
) -> None:
    pool: list[Agent] = []
    records: dict[UUID, AgentRecord] = {}
    for i, (ok, ko, cost, median, has, (wins, losses), load) in enumerate(fleet):
        member = agent(f"a{i}", i + 1, success_count=wins, failure_count=losses, current_load=load)
        pool.append(member)
        if has and ok + ko:
            records[member.id] = rec(member, ok, ok + ko, cost=cost, median=median)

    def decide(known: dict[UUID, AgentRecord]) -> list[Agent]:
        decision = route(
            pool,
            required_capabilities=["python"],
            task_type=TESTING,
            records=known,
            runners_up=len(pool),
        )
        return [decision.chosen, *(a for a, _ in decision.runners_up)]

    plain, learned = decide({}), decide(records)
    # The same pool either way: the tier rules are the floor ...
    assert {a.id for a in learned} == {a.id for a in plain}
    # ... and within it, nobody has a better record key than the chosen one.
    keys = learned_keys(learned, records)
    if keys:
        assert [keys[a.id] for a in learned] == sorted(keys[a.id] for a in learned)
    else:
        assert learned == plain


# ---- pulls: leaving a task to a clearly better idle agent ---------------------------------


def waiting_task(number: int, task_type: TaskType = CODE, ready_at: datetime = T0) -> Task:
    return Task(
        id=UUID(int=1000 + number),
        title=f"task {number}",
        description="",
        task_type=task_type,
        required_capabilities=("python",),
        estimated_effort=1.0,
        status=TaskStatus.READY,
        created_at=T0,
        updated_at=ready_at,
    )


NOW = T0 + timedelta(seconds=5)
ALIVE = NOW - timedelta(seconds=30)


def leave(claimer: Agent, rivals: list[Agent], *records: AgentRecord, **kw: Any) -> set[UUID]:
    tasks = kw.pop("tasks", [waiting_task(1)])
    return tasks_to_leave(
        claimer,
        tasks,
        rivals,
        {(r.agent_id, r.task_type): r for r in records},
        now=kw.pop("now", NOW),
        alive_since=ALIVE,
    )


def test_a_clearly_worse_claimer_leaves_the_task_to_an_idle_better_rival() -> None:
    me = agent("me", 1)
    rival = agent("rival", 2, last_heartbeat=NOW)
    mine, theirs = rec(me, 0, 3, task_type=CODE), rec(rival, 3, 3, task_type=CODE)
    other_type = waiting_task(2, TESTING)
    assert leave(me, [rival], mine, theirs, tasks=[waiting_task(1), other_type]) == {
        waiting_task(1).id
    }


@pytest.mark.parametrize(
    ("rival_changes", "why"),
    [
        ({"tasks_in_progress": 1, "current_load": 0.5}, "busy with a task"),
        ({"status": AgentStatus.BUSY}, "says it is busy"),
        ({"status": AgentStatus.OFFLINE}, "offline"),
        ({"last_heartbeat": ALIVE - timedelta(seconds=1)}, "silent"),
        ({"capabilities": ("go",)}, "cannot do it"),
        ({"success_count": 1, "failure_count": 9}, "DEGRADED tier"),
    ],
)
def test_no_leaving_to_a_rival_that_cannot_take_it_now(
    rival_changes: dict[str, Any], why: str
) -> None:
    me = agent("me", 1)
    rival = agent("rival", 2, **{"last_heartbeat": NOW, **rival_changes})
    assert leave(me, [rival], rec(me, 0, 3, task_type=CODE), rec(rival, 3, 3, task_type=CODE)) == (
        set()
    ), why


def test_no_leaving_without_a_clear_difference_or_a_record_that_counts() -> None:
    me = agent("me", 1)
    rival = agent("rival", 2, last_heartbeat=NOW)
    close = rec(me, 6, 10, task_type=CODE), rec(rival, 8, 10, task_type=CODE)
    assert leave(me, [rival], *close) == set()
    assert leave(me, [rival], rec(me, 0, 2, task_type=CODE), rec(rival, 3, 3, task_type=CODE)) == (
        set()
    )
    assert leave(me, [rival], rec(me, 0, 3, task_type=CODE), rec(rival, 2, 2, task_type=CODE)) == (
        set()
    )
    assert leave(me, [rival], rec(me, 0, 3, task_type=CODE)) == set()
    assert not may_leave(rec(me, 3, 3))
    assert not may_leave(None)


def test_a_task_that_waited_long_enough_is_taken_by_anyone() -> None:
    me = agent("me", 1)
    rival = agent("rival", 2, last_heartbeat=NOW)
    records = rec(me, 0, 3, task_type=CODE), rec(rival, 3, 3, task_type=CODE)
    assert leave(me, [rival], *records, now=T0 + MAX_WAIT) == set()
    assert leave(me, [rival], *records, now=T0 + MAX_WAIT - timedelta(seconds=1))
