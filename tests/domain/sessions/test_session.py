"""The session aggregate's transition rule and the operator verbs."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.errors import CapacityExhausted, IllegalTransition
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.actions import (
    ACTIONS,
    SessionAction,
    allowed_actions,
    resolve_action,
)
from industrial_orchestrator.domain.sessions.session import (
    Actor,
    Session,
    SessionPhase,
    creation_record,
    session_fields,
    session_from_fields,
    transition,
)
from industrial_orchestrator.domain.sessions.states import SessionState, can_transition

from ..session_builders import every_field_set

S = SessionState
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make(status: SessionState = S.PENDING, **fields) -> Session:
    return Session(
        id=uuid4(),
        title="t",
        initial_prompt="p",
        priority=Priority.MEDIUM,
        status=status,
        created_at=T0,
        updated_at=T0,
        **fields,
    )


def test_creation_record_is_seq_one_from_nothing():
    record = creation_record(make(), Actor.OPERATOR)
    assert (record.seq, record.from_state, record.to_state) == (1, None, S.PENDING)


def test_transition_advances_version_and_sequence_and_records_history():
    session = make()
    moved, record = transition(
        session, S.RUNNING, now=T0 + timedelta(seconds=5), actor=Actor.OPERATOR
    )
    assert (moved.version, moved.transition_seq) == (2, 2)
    assert moved.phase == SessionPhase.PLANNING
    assert moved.started_at == T0 + timedelta(seconds=5)
    assert (record.seq, record.from_state, record.to_state) == (2, S.PENDING, S.RUNNING)
    assert session.status == S.PENDING  # the original is untouched


def test_finishing_sets_finished_at_duration_and_clears_phase():
    running, _ = transition(make(), S.RUNNING, now=T0, actor=Actor.OPERATOR)
    done, _ = transition(running, S.COMPLETED, now=T0 + timedelta(seconds=90), actor=Actor.OPERATOR)
    assert done.phase is None
    assert done.duration_seconds == 90
    assert done.is_terminal


def test_resuming_keeps_the_phase_and_first_start_time():
    running, _ = transition(make(), S.RUNNING, now=T0, actor=Actor.OPERATOR)
    executing = running.evolve(phase=SessionPhase.EXECUTING)
    paused, _ = transition(executing, S.PAUSED, now=T0 + timedelta(1), actor=Actor.OPERATOR)
    resumed, _ = transition(paused, S.RUNNING, now=T0 + timedelta(2), actor=Actor.OPERATOR)
    assert resumed.phase == SessionPhase.EXECUTING
    assert resumed.started_at == T0


@pytest.mark.parametrize(
    ("source", "target"),
    [(s, t) for s, t in itertools.product(S, S) if not can_transition(s, t)],
    ids=str,
)
def test_illegal_transition_names_current_requested_and_allowed(source, target):
    with pytest.raises(IllegalTransition) as caught:
        transition(make(source), target, now=T0, actor=Actor.SYSTEM)
    details = caught.value.details
    assert details["current_state"] == source.value
    assert details["requested_state"] == target.value
    assert all(can_transition(source, S(s)) for s in details["allowed_states"])


def test_every_verb_move_is_in_the_transition_table():
    for action, moves in ACTIONS.items():
        for source, target in moves.items():
            assert can_transition(source, target), (action, source, target)


def test_orphaned_has_no_operator_verb():
    assert all(S.ORPHANED not in moves.values() for moves in ACTIONS.values())


@pytest.mark.parametrize(
    ("action", "source", "expected"),
    [
        (SessionAction.START, S.PENDING, S.RUNNING),
        (SessionAction.START, S.QUEUED, S.RUNNING),
        (SessionAction.PAUSE, S.RUNNING, S.PAUSED),
        (SessionAction.RESUME, S.PAUSED, S.RUNNING),
        (SessionAction.RESUME, S.DEGRADED, S.RUNNING),
        (SessionAction.RESUME, S.PARTIALLY_COMPLETED, S.RUNNING),
        (SessionAction.COMPLETE, S.RUNNING, S.COMPLETED),
        (SessionAction.COMPLETE, S.PARTIALLY_COMPLETED, S.COMPLETED),
        (SessionAction.FAIL, S.QUEUED, S.FAILED),
        (SessionAction.CANCEL, S.PAUSED, S.CANCELLED),
        (SessionAction.STOP, S.DEGRADED, S.STOPPED),
    ],
)
def test_verbs_lead_where_the_guide_says(action, source, expected):
    assert resolve_action(make(source), action, slot_free=True) == expected


def test_start_queues_when_no_slot_is_free():
    assert resolve_action(make(S.PENDING), SessionAction.START, slot_free=False) == S.QUEUED


@pytest.mark.parametrize("source", [S.QUEUED, S.PAUSED, S.PARTIALLY_COMPLETED])
def test_other_moves_into_running_refuse_when_full(source):
    action = SessionAction.START if source == S.QUEUED else SessionAction.RESUME
    with pytest.raises(CapacityExhausted):
        resolve_action(make(source), action, slot_free=False)


def test_degraded_already_holds_a_slot():
    assert resolve_action(make(S.DEGRADED), SessionAction.RESUME, slot_free=False) == S.RUNNING


@pytest.mark.parametrize(
    ("action", "source"),
    [
        (SessionAction.CANCEL, S.RUNNING),
        (SessionAction.STOP, S.PENDING),
        (SessionAction.PAUSE, S.DEGRADED),
        (SessionAction.START, S.COMPLETED),
    ],
)
def test_verb_in_wrong_state_names_the_allowed_actions(action, source):
    with pytest.raises(IllegalTransition) as caught:
        resolve_action(make(source), action, slot_free=True)
    assert caught.value.details["allowed_actions"] == allowed_actions(source)
    assert caught.value.details["action"] == action.value


def test_retry_is_offered_only_for_failed_timeout_and_stopped():
    offering = {s for s in S if "retry" in allowed_actions(s)}
    assert offering == {S.FAILED, S.TIMEOUT, S.STOPPED}


@given(st.lists(st.sampled_from(list(SessionAction)), max_size=30), st.booleans())
def test_any_verb_sequence_keeps_version_and_sequence_in_step(actions, slot_free):
    session = make()
    for action in actions:
        try:
            target = resolve_action(session, action, slot_free=slot_free)
        except (IllegalTransition, CapacityExhausted):
            continue
        before = session
        session, record = transition(session, target, now=T0, actor=Actor.OPERATOR)
        assert session.version == before.version + 1
        assert record.seq == session.transition_seq == before.transition_seq + 1


def test_running_time_leaves_out_pauses_and_the_queue():
    from industrial_orchestrator.domain.sessions.session import Actor, Transition, running_seconds
    from industrial_orchestrator.domain.sessions.states import SessionState as S

    t0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
    sid = uuid4()

    def at(seconds: float, source: S | None, target: S, seq: int) -> Transition:
        moment = t0 + timedelta(seconds=seconds)
        return Transition(sid, seq, source, target, None, Actor.SYSTEM, moment)

    history = [
        at(0, None, S.PENDING, 1),
        at(5, S.PENDING, S.QUEUED, 2),
        at(10, S.QUEUED, S.RUNNING, 3),  # runs 10 s
        at(20, S.RUNNING, S.PAUSED, 4),  # paused 100 s
        at(120, S.PAUSED, S.RUNNING, 5),  # runs 5 s
        at(125, S.RUNNING, S.DEGRADED, 6),  # degraded still counts: 5 s
        at(130, S.DEGRADED, S.RUNNING, 7),  # and running until now
    ]
    assert running_seconds(history, t0 + timedelta(seconds=133)) == 10 + 5 + 5 + 3
    assert running_seconds(history[:4], t0 + timedelta(seconds=500)) == 10
    assert running_seconds([], t0) == 0


# The one mapping to plain values (``session_fields``) and back: every field, from a
# database row or from JSON text.

# The working tree is flattened as the row and the API have it: its path under the
# field's name, and these two.
WORKTREE_PARTS = {"branch", "base_commit"}


def test_every_field_is_mapped_and_read_back():
    session = every_field_set()
    fields = session_fields(session)
    assert set(fields) == {f.name for f in dataclasses.fields(Session)} | WORKTREE_PARTS
    assert session_from_fields(fields) == session


def test_plain_values_only_enums_as_their_values_options_as_their_dict_a_flat_worktree():
    session = every_field_set()
    fields = session_fields(session)
    assert (fields["priority"], fields["status"], fields["phase"]) == (
        "HIGH",
        "RUNNING",
        "REVIEWING",
    )
    assert {type(fields[name]) for name in ("priority", "status", "phase")} == {str}
    assert fields["options"] == session.options.to_json()
    assert fields["options"]["agents"] == ["ada", "grace"]
    assert (fields["worktree"], fields["branch"], fields["base_commit"]) == (
        "/srv/trees/thing",
        "orchestrator/thing",
        "a" * 40,
    )


def test_no_worktree_no_phase_and_default_options_read_back():
    session = make()
    fields = session_fields(session)
    assert (fields["worktree"], fields["branch"], fields["base_commit"]) == (None, None, None)
    assert fields["phase"] is None
    assert session_from_fields(fields) == session


def test_read_back_from_json_text_and_from_zoneless_times():
    session = every_field_set()
    text = json.dumps(session_fields(session), default=str)
    assert session_from_fields(json.loads(text)) == session
    # SQLite gives times back without their zone: they are UTC.
    naive = {
        name: value.replace(tzinfo=None)
        for name, value in session_fields(session).items()
        if isinstance(value, datetime)
    }
    assert len(naive) == 5
    assert session_from_fields(session_fields(session) | naive) == session


@given(
    st.lists(
        st.tuples(
            st.sampled_from([S.QUEUED, S.RUNNING, S.PAUSED, S.DEGRADED, S.COMPLETED]),
            st.floats(min_value=0, max_value=1e5, allow_nan=False),
        ),
        max_size=12,
    ),
    st.floats(min_value=0, max_value=1e5, allow_nan=False),
)
def test_the_time_since_the_first_start_bounds_the_running_time(
    moves: list[tuple[SessionState, float]], wait: float
):
    """The step reads a session's history only when this bound is past its limit."""
    from industrial_orchestrator.domain.sessions.session import (
        running_at_most,
        running_seconds,
    )

    session = make()
    now = T0
    history = [creation_record(session, Actor.OPERATOR)]
    for target, gap in moves:
        now += timedelta(seconds=gap)
        if can_transition(session.status, target):
            session, record = transition(session, target, now=now, actor=Actor.SYSTEM)
            history.append(record)
    now += timedelta(seconds=wait)
    bound = running_at_most(session, now)
    ran = running_seconds(history, now)
    if bound is None:
        assert ran == 0
    else:
        assert ran <= bound + 1e-6
