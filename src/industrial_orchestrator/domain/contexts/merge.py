"""How context data (JSON objects) is merged: one rule for writes, merges and layered views.

``deep_merge(base, incoming)`` returns a new object; neither argument is changed.

- **Objects merge key by key, recursively.** Every key of ``base`` and of ``incoming`` is in the
  result; where both sides hold an object under the same key, those objects are merged by the
  same rule.
- **Lists are replaced, not concatenated.** A list under a key in ``incoming`` replaces the
  list (or anything else) in ``base``. A list is one value whose order and length mean
  something (steps of a plan, ranked candidates); concatenating would duplicate items every
  time the same write is merged again, and deduplicating would silently drop intended
  repeats. Replacing keeps the merge idempotent (``deep_merge(x, x) == x``) and makes the list
  exactly what its writer wrote.
- **Object against scalar: incoming wins.** If one side holds an object and the other a scalar
  or list, the incoming value replaces the base value whole. The newer write states the shape
  it wants; mixing a scalar into an object has no meaning.
- **``None`` (JSON null) is a value, not a deletion.** ``{"k": None}`` in ``incoming`` sets
  ``k`` to null and the key stays present. Deleting a key takes a full (non-merge) write, so a
  merge can never lose a key that some writer put there.

``deep_merge(x, x) == x`` and ``{}`` is neutral on both sides, but the merge is not associative
once a scalar replaces an object, so several objects are always folded left to right in a
fixed order (see below).

``merge_contexts(contexts, strategy)`` merges the data of several contexts, taken in layer
order (GLOBAL < SESSION < AGENT < TEMPORARY), then by ``updated_at``, then by id, so later
contexts win:

- ``last_write_wins``: top-level keys are replaced whole by the later context; a conflict is
  reported for every top-level key whose values differ.
- ``deep_merge``: contexts are folded with ``deep_merge``; a conflict is reported for every
  path where the values differ and are not all objects (the later value is kept).
- ``manual``: as ``deep_merge``, but a conflicting path is left out of the data so an
  operator decides it; every conflict is reported.

Each ``KeyConflict`` holds the path (a tuple of keys) and the disagreeing values by context id,
in merge order.

``layered_view(contexts)`` is the effective data an agent sees: the contexts deep-merged from
GLOBAL up to TEMPORARY (higher layers win), with, for each top-level key, the id of the
highest-layer context that holds that key (its provenance). Expired contexts are skipped when
``now`` is given.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..errors import InvalidInput

if TYPE_CHECKING:
    from .context import Context


class MergeStrategy(StrEnum):
    """How a write that did not see the current state (or a multi-context merge) is settled."""

    LAST_WRITE_WINS = "last_write_wins"
    DEEP_MERGE = "deep_merge"
    MANUAL = "manual"


JsonPath = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyConflict:
    """A path whose values disagree between contexts; ``values`` is keyed by context id."""

    path: JsonPath
    values: dict[UUID, Any]


@dataclass(frozen=True, slots=True)
class MergeResult:
    data: dict[str, Any]
    conflicts: list[KeyConflict] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LayeredView:
    """The effective data and, per top-level key, the context it came from."""

    data: dict[str, Any]
    provenance: dict[str, UUID]


def deep_merge(base: Mapping[str, Any], incoming: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``incoming`` into ``base`` by the rules in the module docstring (a new object)."""
    merged: dict[str, Any] = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, value in incoming.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def ensure_json_object(value: object, what: str = "data") -> dict[str, Any]:
    """Return ``value`` if it is a JSON object (string keys, JSON values all the way down).

    Raises ``InvalidInput`` naming the first offending path otherwise.
    """
    if not isinstance(value, dict):
        raise InvalidInput(
            f"{what} must be a JSON object", {"field": what, "got": type(value).__name__}
        )
    _check_json(value, (what,))
    return value


def merge_contexts(contexts: Iterable[Context], strategy: MergeStrategy) -> MergeResult:
    """Merge the contexts' data in layer order, reporting paths whose values disagree."""
    ordered = _in_layer_order(contexts)
    sources = [(ctx.id, ctx.data) for ctx in ordered]
    if strategy is MergeStrategy.LAST_WRITE_WINS:
        data: dict[str, Any] = {}
        for _, ctx_data in sources:
            data.update(copy.deepcopy(ctx_data))
        return MergeResult(data, _conflicts(sources, max_depth=1))
    data = {}
    for _, ctx_data in sources:
        data = deep_merge(data, ctx_data)
    conflicts = _conflicts(sources, max_depth=None)
    if strategy is MergeStrategy.MANUAL:
        for conflict in conflicts:
            _remove_path(data, conflict.path)
    return MergeResult(data, conflicts)


def layered_view(contexts: Iterable[Context], now: datetime | None = None) -> LayeredView:
    """GLOBAL < SESSION < AGENT < TEMPORARY deep-merged; provenance per top-level key."""
    ordered = [c for c in _in_layer_order(contexts) if now is None or not c.is_expired(now)]
    data: dict[str, Any] = {}
    provenance: dict[str, UUID] = {}
    for ctx in ordered:
        data = deep_merge(data, ctx.data)
        for key in ctx.data:
            provenance[key] = ctx.id
    return LayeredView(data, provenance)


def _in_layer_order(contexts: Iterable[Context]) -> list[Context]:
    return sorted(contexts, key=lambda c: (c.scope.layer, c.updated_at, str(c.id)))


def _conflicts(
    sources: Sequence[tuple[UUID, Mapping[str, Any]]], max_depth: int | None
) -> list[KeyConflict]:
    found: list[KeyConflict] = []
    _collect(sources, (), max_depth, found)
    return found


def _collect(
    sources: Sequence[tuple[UUID, Mapping[str, Any]]],
    path: JsonPath,
    max_depth: int | None,
    found: list[KeyConflict],
) -> None:
    keys: dict[str, None] = {}
    for _, obj in sources:
        keys.update(dict.fromkeys(obj))
    for key in keys:
        holders = [(ctx_id, obj[key]) for ctx_id, obj in sources if key in obj]
        here = (*path, key)
        nested = max_depth is None or len(here) < max_depth
        if nested and all(isinstance(v, Mapping) for _, v in holders):
            _collect(holders, here, max_depth, found)
            continue
        first = holders[0][1]
        if any(v != first for _, v in holders[1:]):
            found.append(KeyConflict(here, dict(holders)))


def _remove_path(data: dict[str, Any], path: JsonPath) -> None:
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node.pop(path[-1], None)


def _check_json(value: object, path: JsonPath) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _not_json(path, "a non-finite number")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, (*path, str(i)))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _not_json(path, f"a non-string key {key!r}")
            _check_json(item, (*path, key))
        return
    raise _not_json(path, f"a {type(value).__name__}")


def _not_json(path: JsonPath, what: str) -> InvalidInput:
    where = ".".join(path)
    return InvalidInput(
        f"{where} holds {what}, which is not JSON", {"field": path[0], "path": where}
    )
