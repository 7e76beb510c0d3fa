"""deep_merge rules, multi-context merges and the layered view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.contexts.context import Context, ContextScope
from industrial_orchestrator.domain.contexts.merge import (
    KeyConflict,
    MergeStrategy,
    deep_merge,
    ensure_json_object,
    layered_view,
    merge_contexts,
)
from industrial_orchestrator.domain.errors import InvalidInput

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Scope = ContextScope

keys = st.sampled_from(["a", "b", "c", "d", "e"])
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(keys, json_values, max_size=5)


def ctx(scope: ContextScope, data: dict[str, Any], *, at: datetime = T0) -> Context:
    return Context(
        id=uuid4(),
        scope=scope,
        owner_id=None if scope is Scope.GLOBAL else uuid4(),
        name=f"{scope.value.lower()} context",
        data=data,
        created_at=T0,
        updated_at=at,
    )


def all_paths(obj: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for key, value in obj.items():
        paths.add((*prefix, key))
        if isinstance(value, dict):
            paths |= all_paths(value, (*prefix, key))
    return paths


@given(json_objects)
def test_deep_merge_with_itself_is_identity(x: dict[str, Any]) -> None:
    assert deep_merge(x, x) == x


@given(json_objects)
def test_empty_object_is_neutral(x: dict[str, Any]) -> None:
    assert deep_merge(x, {}) == x
    assert deep_merge({}, x) == x


@given(json_objects, json_objects)
def test_deep_merge_keeps_every_key_of_both_sides(a: dict[str, Any], b: dict[str, Any]) -> None:
    merged = deep_merge(a, b)
    merged_paths = all_paths(merged)
    assert all_paths(b) <= merged_paths
    # A path of ``a`` survives unless ``b`` replaced a value above it with a non-object.
    for path in all_paths(a):
        replaced = any(
            _get(b, path[:i]) is not _MISSING and not isinstance(_get(b, path[:i]), dict)
            for i in range(1, len(path))
        )
        assert replaced or path in merged_paths


@given(json_objects, json_objects)
def test_deep_merge_does_not_change_its_arguments(a: dict[str, Any], b: dict[str, Any]) -> None:
    a_before, b_before = repr(a), repr(b)
    merged = deep_merge(a, b)
    for value in merged.values():
        if isinstance(value, dict | list):
            value.clear()
    assert (repr(a), repr(b)) == (a_before, b_before)


_MISSING = object()


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


@pytest.mark.parametrize(
    ("base", "incoming", "expected"),
    [
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3, "z": 4}}, {"a": {"x": 1, "y": 3, "z": 4}}),
        ({"l": [1, 2, 3]}, {"l": [3, 4]}, {"l": [3, 4]}),
        ({"a": {"x": 1}}, {"a": 5}, {"a": 5}),
        ({"a": 5}, {"a": {"x": 1}}, {"a": {"x": 1}}),
        ({"a": {"x": 1}}, {"a": [1]}, {"a": [1]}),
        ({"a": 1, "b": 2}, {"a": None}, {"a": None, "b": 2}),
        ({"a": {"x": 1}}, {"a": {"x": None}}, {"a": {"x": None}}),
        ({"a": {"x": 1}}, {"a": {}}, {"a": {"x": 1}}),
    ],
    ids=[
        "nested-objects",
        "list-replaced",
        "scalar-over-object",
        "object-over-scalar",
        "list-over-object",
        "none-sets-null",
        "nested-none",
        "empty-object-keeps",
    ],
)
def test_deep_merge_rules(
    base: dict[str, Any], incoming: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert deep_merge(base, incoming) == expected


@pytest.mark.parametrize(
    "value",
    [[], "x", None, {1: "a"}, {"a": {1, 2}}, {"a": float("nan")}, {"a": [object()]}],
)
def test_ensure_json_object_rejects(value: object) -> None:
    with pytest.raises(InvalidInput):
        ensure_json_object(value)


def test_ensure_json_object_names_the_path() -> None:
    with pytest.raises(InvalidInput) as err:
        ensure_json_object({"a": {"b": [1, {2}]}})
    assert err.value.details["path"] == "data.a.b.1"


def test_merge_contexts_deep_merge_reports_disagreeing_leaves() -> None:
    g = ctx(Scope.GLOBAL, {"model": "small", "limits": {"tokens": 10, "steps": 3}})
    s = ctx(Scope.SESSION, {"model": "large", "limits": {"tokens": 10, "time": 5}})
    result = merge_contexts([s, g], MergeStrategy.DEEP_MERGE)
    assert result.data == {"model": "large", "limits": {"tokens": 10, "steps": 3, "time": 5}}
    assert result.conflicts == [KeyConflict(("model",), {g.id: "small", s.id: "large"})]


def test_merge_contexts_last_write_wins_replaces_top_level_keys() -> None:
    g = ctx(Scope.GLOBAL, {"model": "small", "limits": {"tokens": 10, "steps": 3}})
    s = ctx(Scope.SESSION, {"model": "large", "limits": {"tokens": 20}})
    result = merge_contexts([g, s], MergeStrategy.LAST_WRITE_WINS)
    assert result.data == {"model": "large", "limits": {"tokens": 20}}
    assert [c.path for c in result.conflicts] == [("model",), ("limits",)]


def test_merge_contexts_manual_leaves_conflicts_out() -> None:
    g = ctx(Scope.GLOBAL, {"model": "small", "limits": {"tokens": 10, "steps": 3}, "k": 1})
    s = ctx(Scope.SESSION, {"model": "large", "limits": {"tokens": 20}, "k": 1})
    result = merge_contexts([g, s], MergeStrategy.MANUAL)
    assert result.data == {"limits": {"steps": 3}, "k": 1}
    assert [c.path for c in result.conflicts] == [("model",), ("limits", "tokens")]
    assert result.conflicts[1].values == {g.id: 10, s.id: 20}


def test_merge_contexts_orders_same_layer_by_updated_at() -> None:
    later = ctx(Scope.SESSION, {"v": "later"}, at=T0 + timedelta(seconds=2))
    earlier = ctx(Scope.SESSION, {"v": "earlier"}, at=T0 + timedelta(seconds=1))
    result = merge_contexts([later, earlier], MergeStrategy.DEEP_MERGE)
    assert result.data == {"v": "later"}
    assert list(result.conflicts[0].values) == [earlier.id, later.id]


def test_merge_contexts_of_nothing_is_empty() -> None:
    result = merge_contexts([], MergeStrategy.MANUAL)
    assert (result.data, result.conflicts) == ({}, [])


def test_layered_view_overrides_by_layer_with_provenance() -> None:
    g = ctx(Scope.GLOBAL, {"style": "pep8", "limits": {"tokens": 10}, "g": 1})
    s = ctx(Scope.SESSION, {"style": "black", "limits": {"steps": 3}})
    a = ctx(Scope.AGENT, {"style": "ruff"})
    t = ctx(Scope.TEMPORARY, {"scratch": [1, 2]})
    view = layered_view([t, a, s, g])
    assert view.data == {
        "style": "ruff",
        "limits": {"tokens": 10, "steps": 3},
        "g": 1,
        "scratch": [1, 2],
    }
    assert view.provenance == {"style": a.id, "limits": s.id, "g": g.id, "scratch": t.id}


def test_layered_view_skips_expired_contexts_when_given_now() -> None:
    s = ctx(Scope.SESSION, {"k": "session"})
    t = Context(
        id=uuid4(),
        scope=Scope.TEMPORARY,
        owner_id=uuid4(),
        name="scratch",
        data={"k": "temp"},
        created_at=T0,
        updated_at=T0,
        expires_at=T0 + timedelta(minutes=5),
    )
    assert layered_view([s, t]).data == {"k": "temp"}
    assert layered_view([s, t], now=T0 + timedelta(minutes=1)).data == {"k": "temp"}
    view = layered_view([s, t], now=T0 + timedelta(minutes=5))
    assert (view.data, view.provenance) == ({"k": "session"}, {"k": s.id})


@given(
    st.lists(st.sampled_from(list(ContextScope)), min_size=1, max_size=6),
    st.lists(scalars, min_size=6, max_size=6),
)
def test_layered_view_gives_precedence_to_the_higher_layer(
    scopes: list[ContextScope], values: list[Any]
) -> None:
    contexts = [
        ctx(scope, {"key": value}, at=T0 + timedelta(seconds=i))
        for i, (scope, value) in enumerate(zip(scopes, values, strict=False))
    ]
    top = max(contexts, key=lambda c: (c.scope.layer, c.updated_at))
    view = layered_view(reversed(contexts))
    assert view.data["key"] == top.data["key"]
    assert view.provenance["key"] == top.id


@given(st.lists(json_objects, min_size=1, max_size=4))
def test_layered_view_is_the_deep_merge_in_layer_order(datas: list[dict[str, Any]]) -> None:
    scopes = list(ContextScope)
    contexts = [ctx(scopes[i], d) for i, d in enumerate(datas)]
    expected: dict[str, Any] = {}
    for d in datas:
        expected = deep_merge(expected, d)
    view = layered_view(contexts[::-1])
    assert view.data == expected
    assert set(view.provenance) == set(expected)
    ids: set[UUID] = {c.id for c in contexts}
    assert set(view.provenance.values()) <= ids
