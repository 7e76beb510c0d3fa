"""Where each task of a dependency graph is drawn: rows by depth, edges as curves.

A task sits one row below its deepest dependency, so every edge points downwards and the
plan reads top to bottom in the order work can happen (a long chain grows down the page,
where it can be scrolled, rather than off its side). Pure geometry: the page template
turns the result into SVG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Generic, TypeVar

K = TypeVar("K")

NODE_WIDTH = 200
NODE_HEIGHT = 48
COLUMN_GAP = 24
ROW_GAP = 40
MARGIN = 10


@dataclass(frozen=True, slots=True)
class PlacedNode(Generic[K]):
    key: K
    x: int
    y: int
    depth: int
    """0 for a task with no dependency, else one more than its deepest dependency."""


@dataclass(frozen=True, slots=True)
class PlacedEdge(Generic[K]):
    source: K
    """The dependency: the task that must finish first."""
    target: K
    path: str
    """SVG path data, from the bottom of the source to the top of the target."""
    critical: bool


@dataclass(frozen=True, slots=True)
class Layout(Generic[K]):
    nodes: list[PlacedNode[K]]
    edges: list[PlacedEdge[K]]
    width: int
    height: int


def layout(
    order: Sequence[K], edges: Mapping[K, Iterable[K]], critical: Sequence[K] = ()
) -> Layout[K]:
    """Place the nodes of ``order`` (a topological order: dependencies first).

    ``edges`` maps a node to the nodes it depends on (edges to unknown nodes are left
    out); ``critical`` is the critical path, whose consecutive links are marked.
    """
    known = set(order)
    depends = {node: [dep for dep in edges.get(node, ()) if dep in known] for node in order}
    depth: dict[K, int] = {}
    for node in order:
        depth[node] = 1 + max((depth[dep] for dep in depends[node]), default=-1)
    widths: dict[int, int] = {}
    placed: dict[K, PlacedNode[K]] = {}
    for node in order:
        column = widths.get(depth[node], 0)
        widths[depth[node]] = column + 1
        placed[node] = PlacedNode(
            node,
            MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
            MARGIN + depth[node] * (NODE_HEIGHT + ROW_GAP),
            depth[node],
        )
    links = set(pairwise(critical))
    drawn = [
        PlacedEdge(dep, node, _curve(placed[dep], placed[node]), (dep, node) in links)
        for node in order
        for dep in depends[node]
    ]
    rows = max(depth.values(), default=-1) + 1
    widest = max(widths.values(), default=0)
    return Layout(
        nodes=[placed[node] for node in order],
        # Critical links last, so they are drawn over the others.
        edges=sorted(drawn, key=lambda edge: edge.critical),
        width=2 * MARGIN + max(widest * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP, 0),
        height=2 * MARGIN + max(rows * (NODE_HEIGHT + ROW_GAP) - ROW_GAP, 0),
    )


def _curve(source: PlacedNode[K], target: PlacedNode[K]) -> str:
    x1, y1 = source.x + NODE_WIDTH // 2, source.y + NODE_HEIGHT
    x2, y2 = target.x + NODE_WIDTH // 2, target.y
    bend = (y2 - y1) // 2
    return f"M{x1},{y1} C{x1},{y1 + bend} {x2},{y2 - bend} {x2},{y2}"
