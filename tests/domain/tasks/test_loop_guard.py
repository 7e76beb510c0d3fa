"""The loop and stall guard as a pure rule: repeated calls, stalls, token shares."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.tasks.loop_guard import (
    GUARD_ERROR_PREFIX,
    GuardPolicy,
    GuardTrip,
    LoopGuard,
    TripKind,
    canonical_call,
    is_guard_stop,
)

OFF = GuardPolicy(repeat_limit=0, stall_steps=0, token_share=0)


def test_the_same_call_limit_times_in_a_row_trips_saying_what_was_called() -> None:
    guard = LoopGuard(GuardPolicy(repeat_limit=4))
    verdicts = [guard.tool_call("bash", {"command": "ls"}) for _ in range(4)]
    assert verdicts[:3] == [None, None, None]
    assert verdicts[3] == GuardTrip(
        TripKind.REPEATED_TOOL_CALL,
        'the agent called bash {"command":"ls"} 4 times in a row',
    )
    assert verdicts[3].error.startswith(GUARD_ERROR_PREFIX)


def test_another_call_in_between_starts_the_count_again() -> None:
    guard = LoopGuard(GuardPolicy(repeat_limit=3))
    calls = [("bash", {"command": "ls"})] * 2 + [("read", {"path": "a"})]
    calls += [("bash", {"command": "ls"})] * 2
    assert [guard.tool_call(tool, args) for tool, args in calls] == [None] * 5


def test_the_same_input_in_another_key_order_is_the_same_call() -> None:
    guard = LoopGuard(GuardPolicy(repeat_limit=2))
    assert guard.tool_call("edit", {"path": "a", "text": "x"}) is None
    trip = guard.tool_call("edit", {"text": "x", "path": "a"})
    assert trip is not None
    assert trip.kind == TripKind.REPEATED_TOOL_CALL


def test_a_long_input_is_cut_in_the_message() -> None:
    guard = LoopGuard(GuardPolicy(repeat_limit=1))
    trip = guard.tool_call("write", {"content": "x" * 5000})
    assert trip is not None
    assert len(trip.message) < 300
    assert "…" in trip.message


def test_steps_that_bring_no_new_tree_trip_after_stall_steps() -> None:
    guard = LoopGuard(GuardPolicy(stall_steps=3), start_fingerprint="t0")
    assert guard.step_finished("t1", 10) is None  # progress
    assert guard.step_finished("t1", 20) is None
    assert guard.step_finished("t1", 30) is None
    trip = guard.step_finished("t1", 40)
    assert trip == GuardTrip(
        TripKind.NO_PROGRESS,
        "the agent ended 3 steps in a row without changing the files into anything new",
    )


def test_going_back_to_an_earlier_tree_is_no_progress() -> None:
    guard = LoopGuard(GuardPolicy(stall_steps=2), start_fingerprint="t0")
    assert guard.step_finished("t1", 0) is None
    assert guard.step_finished("t0", 0) is None  # undone: seen before
    trip = guard.step_finished("t1", 0)  # redone: seen before too
    assert trip is not None
    assert trip.kind == TripKind.NO_PROGRESS


def test_the_first_step_leaving_the_start_tree_as_it_was_counts_as_a_stall() -> None:
    guard = LoopGuard(GuardPolicy(stall_steps=1), start_fingerprint="t0")
    trip = guard.step_finished("t0", 0)
    assert trip is not None
    assert trip.kind == TripKind.NO_PROGRESS


def test_an_unreadable_tree_is_no_evidence_and_starts_the_count_again() -> None:
    guard = LoopGuard(GuardPolicy(stall_steps=2), start_fingerprint="t0")
    assert guard.step_finished("t0", 0) is None
    assert guard.step_finished(None, 0) is None
    assert guard.step_finished("t0", 0) is None
    assert guard.step_finished("t0", 0) is not None


def test_more_tokens_than_the_share_of_the_session_budget_trips() -> None:
    guard = LoopGuard(GuardPolicy(token_share=0.5), token_budget=2000)
    assert guard.step_finished("a", 1000) is None  # exactly the share is allowed
    trip = guard.step_finished("b", 1001)
    assert trip == GuardTrip(
        TripKind.TOKEN_SHARE,
        "the task used 1001 tokens, more than its share of 1000 "
        "(0.5 of the session's budget of 2000)",
    )


def test_a_session_without_a_budget_has_no_token_share() -> None:
    guard = LoopGuard(GuardPolicy(token_share=0.5), token_budget=None)
    assert guard.step_finished("a", 10**9) is None
    assert GuardPolicy(token_share=0.5).token_limit(None) is None
    assert GuardPolicy(token_share=0).token_limit(1000) is None


def test_a_trip_sticks_whatever_comes_after() -> None:
    guard = LoopGuard(GuardPolicy(repeat_limit=1))
    trip = guard.tool_call("bash", {"command": "ls"})
    assert trip is not None
    assert guard.tool_call("read", {"path": "other"}) == trip
    assert guard.step_finished("new", 0) == trip
    assert guard.tripped == trip


@pytest.mark.parametrize(
    "policy",
    [
        {"repeat_limit": -1},
        {"stall_steps": -1},
        {"token_share": -0.1},
        {"token_share": 1.5},
    ],
)
def test_thresholds_out_of_range_are_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"0 .*or more|between 0"):
        GuardPolicy(**policy)  # type: ignore[arg-type]


def test_a_policy_with_every_check_off_is_not_enabled() -> None:
    assert not OFF.enabled
    assert GuardPolicy(repeat_limit=0, stall_steps=0, token_share=0.1).enabled


def test_the_error_marker_is_recognised_and_nothing_else() -> None:
    assert is_guard_stop(GUARD_ERROR_PREFIX + "anything")
    assert not is_guard_stop("APIError: stopped by the loop guard: quoted")
    assert not is_guard_stop(None)


_calls = st.lists(
    st.tuples(
        st.sampled_from(["bash", "read", "edit"]),
        st.dictionaries(st.sampled_from(["command", "path"]), st.sampled_from(["ls", "a"])),
    ),
    max_size=40,
)
_steps = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from(["t0", "t1", "t2", "t3"])), st.integers(0, 50)),
    max_size=40,
)


@given(_calls, _steps)
def test_with_every_check_off_nothing_ever_trips(
    calls: list[tuple[str, dict[str, str]]], steps: list[tuple[str | None, int]]
) -> None:
    guard = LoopGuard(OFF, token_budget=10, start_fingerprint="t0")
    assert all(guard.tool_call(tool, args) is None for tool, args in calls)
    assert all(guard.step_finished(tree, tokens) is None for tree, tokens in steps)


@given(_calls, st.integers(1, 6))
def test_a_repeat_trip_comes_exactly_at_the_first_run_of_limit_identical_calls(
    calls: list[tuple[str, dict[str, str]]], limit: int
) -> None:
    guard = LoopGuard(GuardPolicy(repeat_limit=limit, stall_steps=0, token_share=0))
    verdicts = [guard.tool_call(tool, args) for tool, args in calls]
    keys = [canonical_call(tool, args) for tool, args in calls]
    expected = next(
        (
            index
            for index in range(limit - 1, len(keys))
            if len(set(keys[index - limit + 1 : index + 1])) == 1
        ),
        None,
    )
    first = next((i for i, verdict in enumerate(verdicts) if verdict is not None), None)
    assert first == expected


@given(_steps, st.integers(1, 5))
def test_a_stall_trip_comes_only_after_limit_steps_without_a_new_tree(
    steps: list[tuple[str | None, int]], limit: int
) -> None:
    guard = LoopGuard(
        GuardPolicy(repeat_limit=0, stall_steps=limit, token_share=0), start_fingerprint="t0"
    )
    seen = {"t0"}
    run = 0
    for tree, tokens in steps:
        verdict = guard.step_finished(tree, tokens)
        run = run + 1 if tree is not None and tree in seen else 0
        if tree is not None:
            seen.add(tree)
        assert (verdict is not None) == (run >= limit)
        if verdict is not None:
            break
