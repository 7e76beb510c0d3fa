"""Version vectors: the causal order, merge laws and JSON round-trip."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.contexts.version_vectors import (
    Ordering,
    VersionVector,
    compare,
    merge,
)
from industrial_orchestrator.domain.errors import InvalidInput

writers = st.sampled_from(["a", "b", "c", "d", "agent-1", "operator"])
vectors = st.dictionaries(writers, st.integers(min_value=0, max_value=5)).map(VersionVector)

V = VersionVector


@given(vectors, vectors)
def test_merge_is_commutative(a: VersionVector, b: VersionVector) -> None:
    assert merge(a, b) == merge(b, a)


@given(vectors, vectors, vectors)
def test_merge_is_associative(a: VersionVector, b: VersionVector, c: VersionVector) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(vectors)
def test_merge_is_idempotent(a: VersionVector) -> None:
    assert merge(a, a) == a


@given(vectors, vectors)
def test_merge_descends_from_both_sides(a: VersionVector, b: VersionVector) -> None:
    m = merge(a, b)
    assert compare(a, m) in (Ordering.BEFORE, Ordering.EQUAL)
    assert compare(b, m) in (Ordering.BEFORE, Ordering.EQUAL)
    assert m.descends(a)
    assert m.descends(b)


@given(vectors, vectors)
def test_compare_is_antisymmetric(a: VersionVector, b: VersionVector) -> None:
    mirror = {
        Ordering.EQUAL: Ordering.EQUAL,
        Ordering.BEFORE: Ordering.AFTER,
        Ordering.AFTER: Ordering.BEFORE,
        Ordering.CONCURRENT: Ordering.CONCURRENT,
    }
    assert compare(b, a) == mirror[compare(a, b)]
    assert (compare(a, b) == Ordering.EQUAL) == (a == b)


@given(vectors, writers)
def test_bump_is_strictly_after(a: VersionVector, writer: str) -> None:
    bumped = a.bump(writer)
    assert compare(bumped, a) == Ordering.AFTER
    assert compare(a, bumped) == Ordering.BEFORE
    assert bumped.dominates(a)
    assert not a.dominates(bumped)
    assert bumped.get_count(writer) == a.get_count(writer) + 1


@given(vectors)
def test_json_round_trip(a: VersionVector) -> None:
    assert VersionVector.from_json(a.to_json()) == a


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (V(), V(), Ordering.EQUAL),
        (V({"a": 1}), V({"a": 1}), Ordering.EQUAL),
        (V({"a": 1}), V({"a": 2}), Ordering.BEFORE),
        (V(), V({"a": 1}), Ordering.BEFORE),
        (V({"a": 2, "b": 1}), V({"a": 1}), Ordering.AFTER),
        (V({"a": 1}), V({"b": 1}), Ordering.CONCURRENT),
        (V({"a": 2, "b": 1}), V({"a": 1, "b": 2}), Ordering.CONCURRENT),
    ],
)
def test_compare_examples(a: VersionVector, b: VersionVector, expected: Ordering) -> None:
    assert compare(a, b) == expected


def test_zero_counters_are_the_same_as_absent() -> None:
    assert V({"a": 0, "b": 1}) == V({"b": 1})
    assert hash(V({"a": 0, "b": 1})) == hash(V({"b": 1}))
    assert V({"a": 0}).to_json() == {}
    assert "a" not in V({"a": 0})
    assert V().get_count("a") == 0


def test_is_an_immutable_mapping() -> None:
    v = V({"b": 2, "a": 1})
    assert dict(v) == {"a": 1, "b": 2}
    assert len(v) == 2
    assert v["b"] == 2
    with pytest.raises(AttributeError):
        v._counters = {}
    assert v.bump("a") == V({"a": 2, "b": 2})
    assert v == V({"a": 1, "b": 2})


@pytest.mark.parametrize(
    "obj",
    [
        [],
        "a=1",
        None,
        {"": 1},
        {1: 1},
        {"a": -1},
        {"a": 1.5},
        {"a": "1"},
        {"a": True},
        {"a": None},
    ],
)
def test_from_json_rejects_bad_input(obj: object) -> None:
    with pytest.raises(InvalidInput):
        VersionVector.from_json(obj)


def test_bump_rejects_an_empty_writer() -> None:
    with pytest.raises(InvalidInput):
        V().bump("")


def test_copies_and_pickles() -> None:
    v = V({"a": 1, "b": 2})
    assert copy.deepcopy(v) == v
    assert copy.copy(v) == v
    assert pickle.loads(pickle.dumps(v)) == v
