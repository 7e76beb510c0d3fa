"""Contexts: validation, the write rule under each strategy, and conflict resolution."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.contexts.context import (
    Applied,
    Context,
    ContextConflict,
    ContextScope,
    ContextUpdate,
    MergeStrategy,
    Resolution,
    UpdateOutcome,
    WriteStamp,
    apply_update,
    context_fields,
    context_from_fields,
    lww_winner,
    new_context,
    resolve_conflict,
)
from industrial_orchestrator.domain.contexts.version_vectors import Ordering, VersionVector, compare
from industrial_orchestrator.domain.errors import InvalidInput

from ..context_builders import every_context_field_set

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Scope = ContextScope
LWW, DEEP, MANUAL = MergeStrategy.LAST_WRITE_WINS, MergeStrategy.DEEP_MERGE, MergeStrategy.MANUAL


def make(
    data: dict[str, Any] | None = None, *, critical: bool = False, scope: Scope = Scope.SESSION
) -> Context:
    return new_context(
        id=uuid4(),
        scope=scope,
        owner_id=None if scope is Scope.GLOBAL else uuid4(),
        name="plan",
        data={"step": 0} if data is None else data,
        now=T0,
        critical=critical,
        creator="creator",
    )


def update(
    writer: str,
    data: dict[str, Any],
    *,
    seconds: float = 1,
    read: Context | None = None,
    strategy: MergeStrategy | None = None,
) -> ContextUpdate:
    """A write by ``writer`` that had read ``read`` (both its version and its vector)."""
    return ContextUpdate(
        writer=writer,
        data=data,
        at=T0 + timedelta(seconds=seconds),
        expected_version=read.version if read else None,
        seen_vector=read.vector if read else None,
        strategy=strategy,
    )


def applied(outcome: UpdateOutcome) -> Context:
    assert isinstance(outcome, Applied), outcome
    return outcome.context


# --- validation ----------------------------------------------------------------------------


def test_new_context_starts_at_version_one_with_the_creators_write() -> None:
    c = make()
    assert (c.version, c.vector, c.last_writer) == (1, VersionVector({"creator": 1}), "creator")
    assert c.default_strategy is LWW
    assert make(critical=True).default_strategy is MANUAL


@pytest.mark.parametrize(
    ("scope", "owner_id"),
    [
        (Scope.GLOBAL, UUID("5e0c4a52-6a51-4d0b-9a55-1f0c2f7d4a11")),
        (Scope.SESSION, None),
        (Scope.AGENT, None),
        (Scope.TEMPORARY, None),
        (Scope.AGENT, "agent-1"),
        (Scope.SESSION, "8c1e7b0e-2f43-4b8e-9d0b-3a7f5d6c9e22"),
    ],
)
def test_owner_rules_per_scope(scope: Scope, owner_id: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        Context(uuid4(), scope, owner_id, "n", {}, T0, T0)
    assert err.value.details["field"] == "owner_id"


@pytest.mark.parametrize("scope", list(Scope))
def test_valid_owners(scope: Scope) -> None:
    owner = None if scope is Scope.GLOBAL else uuid4()
    assert Context(uuid4(), scope, owner, "n", {}, T0, T0).owner_id == owner


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidInput) as err:
        Context(uuid4(), Scope.GLOBAL, None, name, {}, T0, T0)
    assert err.value.details["field"] == "name"


def test_names_up_to_200_characters() -> None:
    assert len(Context(uuid4(), Scope.GLOBAL, None, "x" * 200, {}, T0, T0).name) == 200


@pytest.mark.parametrize("data", [[], "text", None, {"a": {1, 2}}, {1: "a"}])
def test_data_must_be_a_json_object(data: Any) -> None:
    with pytest.raises(InvalidInput):
        Context(uuid4(), Scope.GLOBAL, None, "n", data, T0, T0)
    with pytest.raises(InvalidInput):
        ContextUpdate(writer="w", data=data, at=T0)


def test_update_needs_a_writer() -> None:
    with pytest.raises(InvalidInput):
        ContextUpdate(writer="", data={}, at=T0)


def test_only_temporary_contexts_expire() -> None:
    t = new_context(
        id=uuid4(),
        scope=Scope.TEMPORARY,
        owner_id=uuid4(),
        name="scratch",
        data={},
        now=T0,
        ttl=timedelta(minutes=10),
    )
    assert t.expires_at == T0 + timedelta(minutes=10)
    assert not t.is_expired(T0 + timedelta(minutes=9))
    assert t.is_expired(T0 + timedelta(minutes=10))
    with pytest.raises(InvalidInput):
        Context(uuid4(), Scope.SESSION, uuid4(), "n", {}, T0, T0, expires_at=T0 + timedelta(1))
    with pytest.raises(InvalidInput):
        Context(uuid4(), Scope.TEMPORARY, uuid4(), "n", {}, T0, T0, expires_at=T0)
    with pytest.raises(InvalidInput):
        new_context(
            id=uuid4(),
            scope=Scope.TEMPORARY,
            owner_id=uuid4(),
            name="n",
            data={},
            now=T0,
            ttl=timedelta(0),
        )


def test_scope_layers_are_ordered() -> None:
    assert [s.layer for s in (Scope.GLOBAL, Scope.SESSION, Scope.AGENT, Scope.TEMPORARY)] == [
        0,
        1,
        2,
        3,
    ]


# --- fresh writes --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", [None, LWW, MANUAL])
def test_fresh_write_replaces_data_and_advances_version_and_vector(
    strategy: MergeStrategy | None,
) -> None:
    c = make({"step": 0, "notes": "x"}, critical=True)
    outcome = apply_update(c, update("agent-a", {"step": 1}, read=c, strategy=strategy))
    assert isinstance(outcome, Applied)
    assert not outcome.stale
    new = outcome.context
    assert new.data == {"step": 1}
    assert new.version == 2
    assert new.vector == VersionVector({"creator": 1, "agent-a": 1})
    assert compare(new.vector, c.vector) == Ordering.AFTER
    assert (new.last_writer, new.updated_at) == ("agent-a", T0 + timedelta(seconds=1))


def test_fresh_deep_merge_write_merges() -> None:
    c = make({"step": 0, "notes": {"a": 1}})
    new = applied(apply_update(c, update("w", {"notes": {"b": 2}}, read=c, strategy=DEEP)))
    assert new.data == {"step": 0, "notes": {"a": 1, "b": 2}}


def test_blind_write_is_never_stale() -> None:
    c = make(critical=True)
    c = applied(apply_update(c, update("a", {"step": 1})))
    outcome = apply_update(c, update("b", {"step": 2}))
    assert isinstance(outcome, Applied)
    assert not outcome.stale


def test_updated_at_never_goes_back() -> None:
    c = make()
    c = applied(apply_update(c, update("a", {"step": 1}, seconds=10, read=c)))
    c = applied(apply_update(c, update("b", {"step": 2}, seconds=5, read=c)))
    assert (c.updated_at, c.last_writer, c.data) == (T0 + timedelta(seconds=10), "b", {"step": 2})


# --- stale writes --------------------------------------------------------------------------


def two_writers_from_one_read(
    strategy: MergeStrategy | None, critical: bool = False
) -> tuple[Context, Context, UpdateOutcome]:
    c = make({"step": 0}, critical=critical)
    first = applied(apply_update(c, update("a", {"step": 1, "a": True}, read=c, strategy=strategy)))
    late = update("b", {"step": 2, "b": True}, seconds=2, read=c, strategy=strategy)
    return c, first, apply_update(first, late)


def test_stale_manual_write_is_a_conflict_holding_both_versions() -> None:
    c, first, outcome = two_writers_from_one_read(None, critical=True)
    assert isinstance(outcome, ContextConflict)
    assert outcome.current == first
    assert outcome.current.data == {"step": 1, "a": True}
    assert outcome.incoming == {"step": 2, "b": True}
    assert (outcome.writer, outcome.expected_version, outcome.seen_vector) == ("b", 1, c.vector)
    assert "version" in outcome.reason


def test_stale_detected_by_vector_alone() -> None:
    c = make(critical=True)
    first = applied(apply_update(c, update("a", {"x": 1}, read=c)))
    late = ContextUpdate(writer="b", data={"x": 2}, at=T0, seen_vector=c.vector)
    outcome = apply_update(first, late)
    assert isinstance(outcome, ContextConflict)
    assert "had seen" in outcome.reason


def test_stale_detected_by_version_alone() -> None:
    c = make(critical=True)
    first = applied(apply_update(c, update("a", {"x": 1}, read=c)))
    late = ContextUpdate(writer="b", data={"x": 2}, at=T0, expected_version=1)
    assert isinstance(apply_update(first, late), ContextConflict)


def test_stale_deep_merge_keeps_both_writers_keys() -> None:
    _, first, outcome = two_writers_from_one_read(DEEP)
    assert isinstance(outcome, Applied)
    assert outcome.stale
    assert outcome.context.data == {"step": 2, "a": True, "b": True}
    assert outcome.context.version == first.version + 1
    assert outcome.context.vector == VersionVector({"creator": 1, "a": 1, "b": 1})


def test_stale_lww_later_write_wins() -> None:
    _, _, outcome = two_writers_from_one_read(None)
    assert isinstance(outcome, Applied)
    assert (outcome.stale, outcome.superseded) == (True, False)
    assert outcome.context.data == {"step": 2, "b": True}


def test_stale_lww_earlier_write_is_superseded() -> None:
    c = make()
    first = applied(apply_update(c, update("a", {"v": "a"}, seconds=5, read=c)))
    outcome = apply_update(first, update("b", {"v": "b"}, seconds=3, read=c))
    assert isinstance(outcome, Applied)
    assert outcome.superseded
    assert outcome.context == first


@pytest.mark.parametrize(("first", "second"), [("a", "b"), ("b", "a")])
def test_stale_lww_tie_break_on_equal_time_is_greater_writer(first: str, second: str) -> None:
    c = make()
    one = applied(apply_update(c, update(first, {"v": first}, seconds=1, read=c)))
    final = applied(apply_update(one, update(second, {"v": second}, seconds=1, read=c)))
    assert final.data == {"v": "b"}


def test_lww_winner() -> None:
    early, late = WriteStamp(T0, "z"), WriteStamp(T0 + timedelta(seconds=1), "a")
    assert lww_winner(early, late) is late
    assert lww_winner(late, early) is late
    a, b = WriteStamp(T0, "a"), WriteStamp(T0, "b")
    assert lww_winner(a, b) is b
    assert lww_winner(b, a) is b
    same = WriteStamp(T0, "a")
    assert lww_winner(a, same) is a


# --- 20 concurrent writers, all from the same read -------------------------------------------

WRITERS = [f"agent-{i:02d}" for i in range(20)]


def run_writers(strategy: MergeStrategy, order: list[int]) -> tuple[Context, list[UpdateOutcome]]:
    start = make({"shared": "initial"})
    current = start
    outcomes = []
    for i in order:
        writer = WRITERS[i]
        # Times collide in pairs so the tie-break is exercised too.
        write = update(
            writer,
            {"shared": writer, writer: i},
            seconds=1 + i // 2,
            read=start,
            strategy=strategy,
        )
        outcome = apply_update(current, write)
        outcomes.append(outcome)
        if isinstance(outcome, Applied):
            current = outcome.context
    return current, outcomes


def test_twenty_concurrent_writers_manual() -> None:
    final, outcomes = run_writers(MANUAL, list(range(20)))
    conflicts = [o for o in outcomes if isinstance(o, ContextConflict)]
    assert sum(isinstance(o, Applied) for o in outcomes) == 1
    assert len(conflicts) == 19
    assert final.version == 2
    # No write is lost: the applied one is in the context, each other is held by its conflict.
    kept = {final.last_writer: final.data} | {c.writer: c.incoming for c in conflicts}
    assert kept == {w: {"shared": w, w: i} for i, w in enumerate(WRITERS)}


def test_twenty_concurrent_writers_deep_merge() -> None:
    final, outcomes = run_writers(DEEP, list(range(20)))
    assert all(isinstance(o, Applied) for o in outcomes)
    assert final.version == 21
    assert all(final.data[w] == i for i, w in enumerate(WRITERS))
    assert final.vector == VersionVector({"creator": 1, **dict.fromkeys(WRITERS, 1)})


@given(st.permutations(list(range(20))))
def test_twenty_concurrent_writers_lww_agree_on_one_value_in_any_order(order: list[int]) -> None:
    final, outcomes = run_writers(LWW, order)
    assert all(isinstance(o, Applied) for o in outcomes)
    # The latest time is shared by agent-18 and agent-19; the greater id wins.
    assert final.data == {"shared": "agent-19", "agent-19": 19}
    assert final.last_writer == "agent-19"


# --- resolution ------------------------------------------------------------------------------


def a_conflict() -> tuple[Context, ContextConflict]:
    _, first, outcome = two_writers_from_one_read(None, critical=True)
    assert isinstance(outcome, ContextConflict)
    return first, outcome


@pytest.mark.parametrize(
    ("choose", "custom", "expected"),
    [
        (Resolution.CURRENT, None, {"step": 1, "a": True}),
        (Resolution.INCOMING, None, {"step": 2, "b": True}),
        (Resolution.CUSTOM, {"step": 3}, {"step": 3}),
        (Resolution.CUSTOM, {}, {}),
    ],
)
def test_resolve_conflict(
    choose: Resolution, custom: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    current, conflict = a_conflict()
    resolved = resolve_conflict(
        current,
        conflict.incoming,
        choose=choose,
        by="operator",
        at=T0 + timedelta(minutes=1),
        custom_data=custom,
        incoming_vector=conflict.seen_vector,
    )
    assert resolved.data == expected
    assert resolved.version == current.version + 1
    assert resolved.last_writer == "operator"
    assert resolved.vector.dominates(current.vector)
    assert conflict.seen_vector is not None
    assert resolved.vector.dominates(conflict.seen_vector)
    assert resolved.updated_at == T0 + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("choose", "custom"),
    [
        (Resolution.CUSTOM, None),
        (Resolution.CURRENT, {"x": 1}),
        (Resolution.INCOMING, {}),
    ],
)
def test_resolve_conflict_custom_data_only_with_custom(
    choose: Resolution, custom: dict[str, Any] | None
) -> None:
    current, conflict = a_conflict()
    with pytest.raises(InvalidInput):
        resolve_conflict(
            current, conflict.incoming, choose=choose, by="op", at=T0, custom_data=custom
        )


def test_resolve_conflict_rejects_non_json_custom_data_and_empty_resolver() -> None:
    current, conflict = a_conflict()
    with pytest.raises(InvalidInput):
        resolve_conflict(
            current,
            conflict.incoming,
            choose=Resolution.CUSTOM,
            by="op",
            at=T0,
            custom_data={"x": {1}},
        )
    with pytest.raises(InvalidInput):
        resolve_conflict(current, conflict.incoming, choose=Resolution.CURRENT, by="", at=T0)


def test_apply_does_not_mutate_its_inputs() -> None:
    c = make({"n": {"a": 1}})
    data = {"n": {"b": 2}}
    for strategy in (LWW, DEEP, MANUAL):
        apply_update(c, update("w", data, read=c, strategy=strategy))
    assert c.data == {"n": {"a": 1}}
    assert data == {"n": {"b": 2}}
    new = applied(apply_update(c, update("w", data, read=c)))
    data["n"]["b"] = 3
    assert new.data == {"n": {"b": 2}}


# The one mapping to plain values (``context_fields``) and back: every field, from a
# database row or from JSON text.


def test_every_field_is_mapped_and_read_back() -> None:
    context = every_context_field_set()
    fields = context_fields(context)
    assert set(fields) == {f.name for f in dataclasses.fields(Context)}
    assert context_from_fields(fields) == context


def test_plain_values_only_the_scope_as_its_value_and_the_vector_as_an_object() -> None:
    fields = context_fields(every_context_field_set())
    assert fields["scope"] == "TEMPORARY"
    assert type(fields["scope"]) is str
    assert fields["vector"] == {"ada": 2, "operator": 1}
    assert type(fields["vector"]) is dict


def test_read_back_from_json_text_and_from_zoneless_times() -> None:
    context = every_context_field_set()
    text = json.dumps(context_fields(context), default=str)
    assert context_from_fields(json.loads(text)) == context
    # SQLite gives times back without their zone: they are UTC.
    naive = {
        name: getattr(context, name).replace(tzinfo=None)
        for name in ("created_at", "updated_at", "expires_at")
    }
    assert context_from_fields(context_fields(context) | naive) == context
