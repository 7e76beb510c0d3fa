"""Event construction rules: log splitting never loses or breaks text."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.events import (
    MAX_LOG_TEXT_BYTES,
    MAX_PAYLOAD_BYTES,
    LogStream,
    log_lines,
    payload_size,
    split_utf8,
)


@given(st.text(), st.integers(min_value=4, max_value=64))
def test_split_rejoins_to_the_text_and_respects_the_byte_limit(text, limit):
    pieces = split_utf8(text, limit)
    assert "".join(pieces) == text
    assert all(len(piece.encode()) <= limit for piece in pieces)
    assert all(pieces) or pieces == [""]


def test_split_never_cuts_inside_a_character():
    assert split_utf8("aé€😀", 4) == ["aé", "€", "😀"]


def test_split_refuses_a_limit_below_one_character():
    with pytest.raises(ValueError, match="at least one character"):
        split_utf8("x", 3)


def test_log_events_fit_the_payload_cap_and_number_their_parts():
    text = "😀" * MAX_LOG_TEXT_BYTES  # four times the chunk size in bytes
    events = log_lines(uuid4(), LogStream.AGENT, text, datetime.now(UTC))
    assert len(events) == 4
    assert [e.payload["part"] for e in events] == [1, 2, 3, 4]
    assert {e.payload["parts"] for e in events} == {4}
    assert all(payload_size(e.payload) <= MAX_PAYLOAD_BYTES for e in events)
    assert "".join(e.payload["text"] for e in events) == text
