"""The storable-text rule, checked against its definition with hypothesis: storable means
no NUL and no code point in U+D800-U+DFFF, which is exactly what UTF-8 can encode and
PostgreSQL can keep; cleaning makes any text storable and leaves good text alone."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.storable_text import (
    REPLACEMENT,
    Unstorable,
    escaped,
    find_unstorable,
    first_unstorable,
    is_storable,
    storable,
    storable_json,
)

# Ordinary characters (hypothesis leaves surrogates out by default) mixed with the bad ones.
BAD = st.one_of(st.just("\x00"), st.integers(0xD800, 0xDFFF).map(chr))
CHARS = st.one_of(st.characters(), st.characters(), BAD)
TEXT = st.text(CHARS, max_size=30)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def _bad(char: str) -> bool:
    return char == "\x00" or 0xD800 <= ord(char) <= 0xDFFF


@given(TEXT)
def test_storable_means_no_nul_and_no_surrogate(text: str) -> None:
    assert is_storable(text) == (not any(_bad(c) for c in text))
    first = first_unstorable(text)
    assert first == next((c for c in text if _bad(c)), None)


@given(TEXT)
def test_storable_text_is_what_utf8_and_postgresql_take(text: str) -> None:
    try:
        text.encode("utf-8")
        encodes = True
    except UnicodeEncodeError:
        encodes = False
    assert is_storable(text) == (encodes and "\x00" not in text)


@given(TEXT)
def test_cleaning_replaces_exactly_the_bad_code_points(text: str) -> None:
    cleaned = storable(text)
    assert is_storable(cleaned)
    assert len(cleaned) == len(text)
    for before, after in zip(text, cleaned, strict=True):
        assert after == (REPLACEMENT if _bad(before) else before)
    assert storable(cleaned) == cleaned


@given(TEXT)
def test_escaped_text_is_storable_and_names_each_bad_code_point(text: str) -> None:
    shown = escaped(text)
    assert is_storable(shown)
    if is_storable(text):
        assert shown == text
    for char in {c for c in text if _bad(c)}:
        assert f"\\u{ord(char):04x}" in shown


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, child in value.items() for s in [key, *_strings(child)]]
    if isinstance(value, list):
        return [s for child in value for s in _strings(child)]
    return []


def _at(value: Any, problem: Unstorable) -> str:
    """The string the problem's path leads to (the key itself for a bad key)."""
    *parents, last = problem.path if problem.path else (None,)
    for step in parents:
        value = value[step]
    if problem.in_key:
        return str(next(k for k in value if escaped(k) == last and not is_storable(k)))
    return str(value[last]) if problem.path else str(value)


@given(JSON)
def test_a_problem_is_found_exactly_when_some_string_or_key_is_bad(value: Any) -> None:
    problem = find_unstorable(value)
    bad = [s for s in _strings(value) if not is_storable(s)]
    assert (problem is None) == (not bad)
    if problem is not None:
        found = _at(value, problem)
        assert problem.char == first_unstorable(found)
        assert all(is_storable(str(step)) for step in problem.path)


@given(JSON)
def test_cleaned_json_is_storable_and_survives_a_round_trip(value: Any) -> None:
    cleaned = storable_json(value)
    assert find_unstorable(cleaned) is None
    text = json.dumps(cleaned, ensure_ascii=False)
    text.encode("utf-8")
    if find_unstorable(value) is None:
        assert cleaned is value
