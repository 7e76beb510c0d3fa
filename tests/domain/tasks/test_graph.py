"""The task dependency graph: examples, and hypothesis against brute force on small DAGs."""

from __future__ import annotations

import itertools
import math
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from industrial_orchestrator.domain.errors import InvalidInput
from industrial_orchestrator.domain.tasks.graph import (
    CycleDetected,
    TaskNode,
    UnknownDependency,
    blocked,
    critical_path,
    find_cycle,
    graph_of,
    ready,
    topological_order,
    would_create_cycle,
)
from industrial_orchestrator.domain.tasks.task import TaskStatus, TaskType, new_task

S = TaskStatus
# (nodes in their given order, edges task -> dependencies, effort per node)
Graph = tuple[list[str], dict[str, list[str]], dict[str, float]]


def nodes_of(
    efforts: dict[str, float], statuses: dict[str, TaskStatus] | None = None
) -> dict[str, TaskNode]:
    statuses = statuses or {}
    return {k: TaskNode(e, statuses.get(k, S.PENDING)) for k, e in efforts.items()}


# --- strategies ----------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 8) -> Graph:
    """A random DAG: node i may only depend on nodes j < i in a shuffled naming."""
    n = draw(st.integers(min_value=0, max_value=max_nodes))
    names = draw(st.permutations([f"t{i}" for i in range(n)]))
    edges: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        if i:
            edges[name] = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3))
        else:
            edges[name] = []
    order = draw(st.permutations(names))
    efforts = {
        name: draw(st.floats(min_value=0.25, max_value=20, allow_nan=False)) for name in order
    }
    return list(order), edges, efforts


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    """A DAG plus an injected back edge (or self-loop) that closes a cycle."""
    _, edges, _ = draw(dags(max_nodes=7).filter(lambda g: len(g[0]) >= 1))
    names = sorted(edges)
    # Pick a path's ends: a node that reaches another along the edges, then link back.
    start = draw(st.sampled_from(names))
    reachable = _reach(edges, start)
    target = draw(st.sampled_from(sorted(reachable | {start})))
    edges = {k: list(v) for k, v in edges.items()}
    edges[target].append(start)
    return edges


def _reach(edges: dict[str, list[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for dep in edges.get(stack.pop(), []):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


def _all_paths_total(edges: dict[str, list[str]], efforts: dict[str, float]) -> float:
    """Brute force: the heaviest of all dependency chains."""
    best = 0.0

    def walk(node: str, total: float) -> None:
        nonlocal best
        total += efforts[node]
        best = max(best, total)
        for dep in edges.get(node, []):
            walk(dep, total)

    for node in efforts:
        walk(node, 0.0)
    return best


def _is_cycle_in(cycle: list[str], edges: dict[str, list[str]]) -> bool:
    return (
        len(cycle) >= 2
        and cycle[0] == cycle[-1]
        and all(b in edges.get(a, []) for a, b in itertools.pairwise(cycle))
    )


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=200)
@given(dags())
def test_topological_order_respects_every_edge(graph: Graph) -> None:
    order, edges, _ = graph
    result = topological_order(order, edges)
    assert sorted(result) == sorted(order)
    position = {node: i for i, node in enumerate(result)}
    for node, deps in edges.items():
        for dep in deps:
            assert position[dep] < position[node]
    assert find_cycle(edges) is None
    assert topological_order(order, edges) == result  # deterministic


@settings(max_examples=200)
@given(dags())
def test_critical_path_is_the_longest_path(graph: Graph) -> None:
    _, edges, efforts = graph
    result = critical_path(nodes_of(efforts), edges)
    assert math.isclose(result.total_effort, _all_paths_total(edges, efforts), rel_tol=1e-9)
    assert math.isclose(result.total_effort, sum(efforts[n] for n in result.path), rel_tol=1e-9)
    # The path is a real chain: each task depends on the one before it.
    for earlier, later in itertools.pairwise(result.path):
        assert earlier in edges[later]


@settings(max_examples=200)
@given(cyclic_graphs())
def test_injected_cycle_is_refused_and_reported_truthfully(edges: dict[str, list[str]]) -> None:
    cycle = find_cycle(edges)
    assert cycle is not None
    assert _is_cycle_in(cycle, edges)
    with pytest.raises(CycleDetected) as info:
        topological_order(sorted(edges), edges)
    assert _is_cycle_in([str(node) for node in info.value.cycle], edges)
    assert info.value.details["cycle"] == info.value.cycle
    assert isinstance(info.value, InvalidInput)


@settings(max_examples=150)
@given(dags(), st.data())
def test_would_create_cycle_matches_recomputation(graph: Graph, data: st.DataObject) -> None:
    order, edges, _ = graph
    if not order:
        return
    task = data.draw(st.sampled_from(order))
    dep = data.draw(st.sampled_from(order))
    cycle = would_create_cycle(edges, (task, dep))
    added = {k: [*v, dep] if k == task else list(v) for k, v in edges.items()}
    assert (cycle is not None) == (find_cycle(added) is not None)
    if cycle is not None:
        assert cycle[0] == cycle[-1] == task
        assert _is_cycle_in(cycle, added)


@settings(max_examples=150)
@given(dags(), st.data())
def test_ready_and_blocked_partition_waiting_tasks(graph: Graph, data: st.DataObject) -> None:
    order, edges, efforts = graph
    statuses = {n: data.draw(st.sampled_from(list(S))) for n in order}
    nodes = nodes_of(efforts, statuses)
    ready_now = ready(nodes, edges)
    held = blocked(nodes, edges)
    waiting = {n for n in order if statuses[n] in (S.PENDING, S.READY)}
    assert set(ready_now) | set(held) == waiting
    assert not set(ready_now) & set(held)
    for deps in held.values():
        assert deps
        assert all(statuses[d] not in (S.COMPLETED, S.SKIPPED) for d in deps)


# --- examples ------------------------------------------------------------------------------

EDGES = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}


def test_topological_order_breaks_ties_by_given_order() -> None:
    assert topological_order(["e", "d", "c", "b", "a"], EDGES) == ["e", "a", "c", "b", "d"]
    assert topological_order(["a", "b", "c", "d", "e"], EDGES) == ["a", "b", "c", "d", "e"]


def test_cycle_message_and_details() -> None:
    edges = {"A": ["B"], "B": ["C"], "C": ["A"]}
    with pytest.raises(CycleDetected) as info:
        topological_order(["A", "B", "C"], edges)
    assert info.value.message == "dependency cycle: A -> B -> C -> A"
    assert info.value.details == {"cycle": ["A", "B", "C", "A"]}
    assert info.value.code == "dependency_cycle"


def test_self_dependency_is_a_cycle() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert would_create_cycle({"a": []}, ("a", "a")) == ["a", "a"]


def test_unknown_dependency_is_refused() -> None:
    with pytest.raises(UnknownDependency) as info:
        topological_order(["a"], {"a": ["ghost"]})
    assert info.value.details == {"task_id": "a", "unknown": ["ghost"]}
    with pytest.raises(UnknownDependency):
        ready(nodes_of({"a": 1}), {"a": ["ghost"]})
    with pytest.raises(UnknownDependency):
        topological_order(["a"], {"b": []})


def test_critical_path_example_and_remaining_only() -> None:
    nodes = nodes_of(
        {"a": 2, "b": 5, "c": 1, "d": 1, "e": 7.5},
        {"a": S.COMPLETED, "b": S.COMPLETED},
    )
    full = critical_path(nodes, EDGES)
    assert full.path == ("a", "b", "d")
    assert full.total_effort == 8
    remaining = critical_path(nodes, EDGES, remaining_only=True)
    assert remaining.path == ("e",)
    assert remaining.total_effort == 7.5
    assert critical_path({}, {}).path == ()


def test_ready_and_blocked_example() -> None:
    nodes = nodes_of(
        {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1},
        {"a": S.COMPLETED, "b": S.FAILED, "c": S.SKIPPED, "e": S.RUNNING},
    )
    assert ready(nodes, EDGES) == []
    assert blocked(nodes, EDGES) == {"d": ("b",)}
    nodes["b"] = TaskNode(1, S.COMPLETED)
    assert ready(nodes, EDGES) == ["d"]


def test_would_create_cycle_reports_the_loop() -> None:
    assert would_create_cycle(EDGES, ("a", "d")) == ["a", "d", "b", "a"]
    assert would_create_cycle(EDGES, ("e", "d")) is None


def test_graph_of_stored_tasks() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, tzinfo=UTC)
    first = new_task(
        id=UUID(int=1),
        title="design",
        description="",
        task_type=TaskType.DESIGN,
        required_capabilities=["system_design"],
        estimated_effort=2,
        now=now,
    )
    second = new_task(
        id=UUID(int=2),
        title="build",
        description="",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["code_generation"],
        estimated_effort=3,
        now=now,
        depends_on=[first.id],
    )
    nodes, edges = graph_of([first, second])
    assert topological_order(list(nodes), edges) == [first.id, second.id]
    assert critical_path(nodes, edges).total_effort == 5
    assert ready(nodes, edges) == [first.id]
