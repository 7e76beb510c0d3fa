"""The dependency graph's geometry: pure, so checked on many random plans."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.dashboard.graph_layout import NODE_HEIGHT, NODE_WIDTH, layout


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[int], dict[int, list[int]]]:
    """A random acyclic plan in topological order: a node depends on earlier ones only."""
    size = draw(st.integers(0, 25))
    edges = {
        node: draw(st.lists(st.integers(0, node - 1), max_size=4, unique=True)) if node else []
        for node in range(size)
    }
    return list(range(size)), edges


@given(plans())
def test_every_edge_points_down_and_no_two_tasks_overlap(
    plan: tuple[list[int], dict[int, list[int]]],
) -> None:
    order, edges = plan
    drawn = layout(order, edges)
    where = {node.key: node for node in drawn.nodes}
    assert set(where) == set(order)
    for node, deps in edges.items():
        assert where[node].depth == 1 + max((where[d].depth for d in deps), default=-1)
        for dep in deps:
            assert where[node].y > where[dep].y
    boxes = {(node.x, node.y) for node in drawn.nodes}
    assert len(boxes) == len(order), "two tasks drawn in the same place"
    for node in drawn.nodes:
        assert node.x >= 0
        assert node.x + NODE_WIDTH <= drawn.width
        assert node.y >= 0
        assert node.y + NODE_HEIGHT <= drawn.height
    assert len(drawn.edges) == sum(len(deps) for deps in edges.values())


def test_a_task_sits_one_row_below_its_deepest_dependency() -> None:
    # a -> b -> c, and d depends on a and c: d is under c, not under a.
    drawn = layout(["a", "b", "c", "d"], {"b": ["a"], "c": ["b"], "d": ["a", "c"]})
    depth = {node.key: node.depth for node in drawn.nodes}
    assert depth == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_only_the_links_of_the_critical_path_are_marked_and_drawn_last() -> None:
    drawn = layout(
        ["a", "b", "c", "d"], {"b": ["a"], "c": ["a"], "d": ["b", "c"]}, critical=["a", "c", "d"]
    )
    marked = {(edge.source, edge.target) for edge in drawn.edges if edge.critical}
    assert marked == {("a", "c"), ("c", "d")}
    assert [edge.critical for edge in drawn.edges] == [False, False, True, True]


def test_edges_to_tasks_outside_the_graph_are_left_out_and_an_empty_plan_is_empty() -> None:
    drawn = layout(["a"], {"a": ["elsewhere"]})
    assert drawn.edges == []
    assert [node.depth for node in drawn.nodes] == [0]
    empty = layout([], {})
    assert empty.nodes == []
    assert empty.edges == []
