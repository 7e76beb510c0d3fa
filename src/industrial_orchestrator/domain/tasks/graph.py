"""The dependency graph of a session's tasks: cycles, order, critical path, what can run.

Edges point from a task to the tasks it depends on (``edges[task] = its dependencies``).
The functions are generic over the id type (UUIDs for stored tasks, plan keys for a
decomposition) and deterministic: ties are broken by the order in which the nodes are
given, and neighbours are visited in the order they are listed.

Decision: a dependency on an id outside the given node set is an error
(``UnknownDependency``, an ``InvalidInput``), not something silently ignored or assumed
finished: a task graph is always loaded whole (one session, or one decomposition), so an
outside id means a dangling reference.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from uuid import UUID

from ..errors import InvalidInput
from .task import WAITING_STATUSES, Task, TaskStatus, is_finished

K = TypeVar("K", bound=Hashable)


class CycleDetected(InvalidInput):
    """The dependencies loop back on themselves; ``details["cycle"]`` is the loop."""

    code = "dependency_cycle"

    def __init__(self, cycle: Sequence[object]) -> None:
        super().__init__(
            "dependency cycle: " + " -> ".join(str(node) for node in cycle),
            {"cycle": [str(node) for node in cycle]},
        )
        self.cycle = list(cycle)


class UnknownDependency(InvalidInput):
    """A task depends on an id that is not in the graph."""

    code = "unknown_dependency"


@dataclass(frozen=True, slots=True)
class TaskNode:
    """What the graph needs to know about one task."""

    effort: float
    status: TaskStatus = TaskStatus.PENDING


@dataclass(frozen=True, slots=True)
class CriticalPath(Generic[K]):
    """The heaviest chain of dependencies, first task to run first."""

    path: tuple[K, ...]
    total_effort: float


def graph_of(tasks: Iterable[Task]) -> tuple[dict[UUID, TaskNode], dict[UUID, tuple[UUID, ...]]]:
    """Nodes and edges of stored tasks, in the order given."""
    nodes: dict[UUID, TaskNode] = {}
    edges: dict[UUID, tuple[UUID, ...]] = {}
    for task in tasks:
        nodes[task.id] = TaskNode(task.estimated_effort, task.status)
        edges[task.id] = task.depends_on
    return nodes, edges


def _adjacency(edges: Mapping[K, Iterable[K]]) -> dict[K, list[K]]:
    return {node: list(dict.fromkeys(deps)) for node, deps in edges.items()}


def find_cycle(edges: Mapping[K, Iterable[K]]) -> list[K] | None:
    """A cycle following the edges, as a path whose first and last ids are the same.

    ``None`` when the graph is acyclic. A task depending on itself is the cycle
    ``[a, a]``. Ids that appear only as dependencies are treated as having none.
    """
    adjacency = _adjacency(edges)
    white, grey, black = 0, 1, 2
    colour: dict[K, int] = {}
    for root in adjacency:
        if colour.get(root, white) != white:
            continue
        # Iterative DFS: (node, iterator over its dependencies); the stack is the path.
        stack: list[tuple[K, Iterator[K]]] = [(root, iter(adjacency.get(root, ())))]
        path: list[K] = [root]
        colour[root] = grey
        while stack:
            node, deps = stack[-1]
            advanced = False
            for dep in deps:
                state = colour.get(dep, white)
                if state == grey:
                    return [*path[path.index(dep) :], dep]
                if state == white:
                    colour[dep] = grey
                    stack.append((dep, iter(adjacency.get(dep, ()))))
                    path.append(dep)
                    advanced = True
                    break
            if not advanced:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


def check_known(nodes: Iterable[K], edges: Mapping[K, Iterable[K]]) -> None:
    """Raise ``UnknownDependency`` for an edge to or from an id outside ``nodes``."""
    known = set(nodes)
    for node, deps in edges.items():
        if node not in known:
            raise UnknownDependency(
                f"dependencies given for unknown task {node}", {"task_id": str(node)}
            )
        outside = [dep for dep in deps if dep not in known]
        if outside:
            raise UnknownDependency(
                f"task {node} depends on unknown task(s): {', '.join(map(str, outside))}",
                {"task_id": str(node), "unknown": [str(dep) for dep in outside]},
            )


def check_acyclic(edges: Mapping[K, Iterable[K]]) -> None:
    """Raise ``CycleDetected`` naming a cycle if there is one."""
    cycle = find_cycle(edges)
    if cycle is not None:
        raise CycleDetected(cycle)


def topological_order(nodes: Sequence[K], edges: Mapping[K, Iterable[K]]) -> list[K]:
    """Every id of ``nodes``, each after all of its dependencies.

    Among the ids whose dependencies are placed, the one earliest in ``nodes`` comes first,
    so the order is deterministic and stable. Raises ``UnknownDependency`` for an edge
    outside ``nodes`` and ``CycleDetected`` for a cycle.
    """
    check_known(nodes, edges)
    check_acyclic(edges)
    position = {node: i for i, node in enumerate(dict.fromkeys(nodes))}
    order_of = list(position)
    adjacency = _adjacency(edges)
    remaining = {node: len(adjacency.get(node, ())) for node in order_of}
    dependants: dict[K, list[K]] = {node: [] for node in order_of}
    for node, deps in adjacency.items():
        for dep in deps:
            dependants[dep].append(node)
    heap = [position[node] for node in order_of if remaining[node] == 0]
    heapq.heapify(heap)
    result: list[K] = []
    while heap:
        node = order_of[heapq.heappop(heap)]
        result.append(node)
        for dependant in dependants[node]:
            remaining[dependant] -= 1
            if remaining[dependant] == 0:
                heapq.heappush(heap, position[dependant])
    return result


def critical_path(
    nodes: Mapping[K, TaskNode],
    edges: Mapping[K, Iterable[K]],
    *,
    remaining_only: bool = False,
) -> CriticalPath[K]:
    """The chain of dependencies with the largest summed effort, and that sum.

    The path runs from the task to start first to the task that finishes last. With
    ``remaining_only``, finished tasks (COMPLETED, SKIPPED) weigh nothing, which gives the
    critical path of the work still to do. Ties go to the path ending earliest in
    ``nodes`` order, then to the earliest dependency. An empty graph gives ``()`` and 0.
    """

    def weight(node: K) -> float:
        info = nodes[node]
        return 0.0 if remaining_only and is_finished(info.status) else info.effort

    order = topological_order(list(nodes), edges)
    adjacency = _adjacency(edges)
    best: dict[K, float] = {}
    via: dict[K, K | None] = {}
    for node in order:
        previous: K | None = None
        longest = 0.0
        for dep in adjacency.get(node, ()):
            if previous is None or best[dep] > longest:
                previous, longest = dep, best[dep]
        best[node] = longest + weight(node)
        via[node] = previous
    if not order:
        return CriticalPath((), 0.0)
    end = order[0]
    position = {node: i for i, node in enumerate(nodes)}
    for node in order:
        if best[node] > best[end] or (best[node] == best[end] and position[node] < position[end]):
            end = node
    path: list[K] = []
    cursor: K | None = end
    while cursor is not None:
        path.append(cursor)
        cursor = via[cursor]
    path.reverse()
    return CriticalPath(tuple(path), best[end])


def ready(nodes: Mapping[K, TaskNode], edges: Mapping[K, Iterable[K]]) -> list[K]:
    """Tasks waiting to start (PENDING or READY) whose dependencies are all finished.

    In ``nodes`` order. Raises ``UnknownDependency`` for an edge outside ``nodes``.
    """
    check_known(nodes, edges)
    return [
        node
        for node, info in nodes.items()
        if info.status in WAITING_STATUSES
        and all(is_finished(nodes[dep].status) for dep in edges.get(node, ()))
    ]


def blocked(nodes: Mapping[K, TaskNode], edges: Mapping[K, Iterable[K]]) -> dict[K, tuple[K, ...]]:
    """Each waiting task (PENDING or READY) held back, with the unfinished dependencies.

    A dependency that FAILED or was CANCELLED blocks its dependants too: it is not finished.
    Raises ``UnknownDependency`` for an edge outside ``nodes``.
    """
    check_known(nodes, edges)
    result: dict[K, tuple[K, ...]] = {}
    for node, info in nodes.items():
        if info.status not in WAITING_STATUSES:
            continue
        holding = tuple(
            dict.fromkeys(dep for dep in edges.get(node, ()) if not is_finished(nodes[dep].status))
        )
        if holding:
            result[node] = holding
    return result


def would_create_cycle(edges: Mapping[K, Iterable[K]], new_edge: tuple[K, K]) -> list[K] | None:
    """The cycle that adding ``task -> dependency`` would close, or ``None`` if it is safe.

    ``new_edge`` is ``(task, dependency)``. The cycle is returned as a path starting and
    ending at ``task``, so ``CycleDetected(cycle)`` reports it directly.
    """
    task, dependency = new_edge
    if task == dependency:
        return [task, task]
    adjacency = _adjacency(edges)
    # A path dependency -> ... -> task already exists iff the new edge closes a loop.
    parents: dict[K, K] = {}
    frontier = deque([dependency])
    seen = {dependency}
    while frontier:
        node = frontier.popleft()
        if node == task:
            path = [task]
            while path[-1] != dependency:
                path.append(parents[path[-1]])
            path.reverse()
            return [task, *path]
        for dep in adjacency.get(node, ()):
            if dep not in seen:
                seen.add(dep)
                parents[dep] = node
                frontier.append(dep)
    return None
