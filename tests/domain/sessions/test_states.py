"""The state reference and transition tables, checked against the user guide §5 and the
settled decisions of ARCHITECTURE.md §4, pair by pair."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.sessions.states import (
    STATE_TABLE,
    SessionState,
    StateCategory,
    allowed_targets,
    can_transition,
    is_terminal,
)

S = SessionState

# Written out independently of the code: the guide's table, plus ORPHANED from every
# non-terminal state (system only).
GUIDE_TRANSITIONS = {
    "PENDING": {"QUEUED", "RUNNING", "CANCELLED", "FAILED", "ORPHANED"},
    "QUEUED": {"RUNNING", "CANCELLED", "FAILED", "ORPHANED"},
    "RUNNING": {
        "COMPLETED",
        "PARTIALLY_COMPLETED",
        "FAILED",
        "TIMEOUT",
        "PAUSED",
        "STOPPED",
        "DEGRADED",
        "ORPHANED",
    },
    "PAUSED": {"RUNNING", "STOPPED", "CANCELLED", "ORPHANED"},
    "DEGRADED": {"RUNNING", "FAILED", "COMPLETED", "STOPPED", "ORPHANED"},
    "PARTIALLY_COMPLETED": {"RUNNING", "COMPLETED"},
}

GUIDE_REFERENCE = {
    # state: (colour, terminal, category)
    "PENDING": ("#6B7280", False, "INITIAL"),
    "QUEUED": ("#3B82F6", False, "ACTIVE"),
    "RUNNING": ("#10B981", False, "ACTIVE"),
    "PAUSED": ("#F59E0B", False, "ACTIVE"),
    "COMPLETED": ("#059669", True, "SUCCESS"),
    "PARTIALLY_COMPLETED": ("#D97706", True, "SUCCESS"),
    "FAILED": ("#DC2626", True, "FAILURE"),
    "TIMEOUT": ("#7C3AED", True, "FAILURE"),
    "STOPPED": ("#4B5563", True, "FAILURE"),
    "CANCELLED": ("#374151", True, "FAILURE"),
    "ORPHANED": ("#9333EA", True, "SYSTEM"),
    "DEGRADED": ("#F97316", False, "ACTIVE"),
}

GUIDE_EMOJI = {
    "QUEUED": "📋",
    "COMPLETED": "✅",
    "STOPPED": "🛑",
    "CANCELLED": "🚫",
    "ORPHANED": "🧩",
    "DEGRADED": "🔻",
}

ALL_PAIRS = list(itertools.product(SessionState, SessionState))


def test_there_are_twelve_states_and_144_pairs():
    assert len(SessionState) == 12
    assert len(ALL_PAIRS) == 144


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_every_pair_matches_the_guide(source: SessionState, target: SessionState):
    expected = target.value in GUIDE_TRANSITIONS.get(source.value, set())
    assert can_transition(source, target) is expected


@pytest.mark.parametrize("state", list(SessionState), ids=lambda s: s.value)
def test_reference_row_matches_the_guide(state: SessionState):
    info = STATE_TABLE[state]
    colour, terminal, category = GUIDE_REFERENCE[state.value]
    assert (info.color, info.terminal, info.category) == (colour, terminal, StateCategory(category))
    assert info.emoji
    if state.value in GUIDE_EMOJI:
        assert info.emoji == GUIDE_EMOJI[state.value]


def test_emoji_are_distinct():
    assert len({info.emoji for info in STATE_TABLE.values()}) == 12


def test_frozen_terminal_states_have_no_exit():
    frozen = {"COMPLETED", "FAILED", "TIMEOUT", "STOPPED", "CANCELLED", "ORPHANED"}
    for state in SessionState:
        assert (not allowed_targets(state)) is (state.value in frozen)
        if state.value in frozen:
            assert is_terminal(state)


def test_no_state_transitions_to_itself_or_back_to_pending():
    for state in SessionState:
        assert not can_transition(state, state)
        assert not can_transition(state, S.PENDING)


@given(st.lists(st.sampled_from(list(SessionState)), max_size=40))
def test_random_walks_never_leave_a_frozen_state(steps: list[SessionState]):
    state = S.PENDING
    for step in steps:
        if can_transition(state, step):
            assert not (is_terminal(state) and state != S.PARTIALLY_COMPLETED)
            state = step
