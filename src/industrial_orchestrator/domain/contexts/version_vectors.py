"""Version vectors: which writes a copy of a context has seen.

A ``VersionVector`` maps a writer id (a non-empty string: an agent id, ``"operator"``, ...) to
how many writes of that writer are included in a state. A zero counter means the same as an
absent writer, so zeros are dropped on construction and two vectors are equal exactly when
they hold the same non-zero counters.

``compare(a, b)`` orders two vectors the way their states are causally related:

- ``EQUAL``: the same writes;
- ``BEFORE``: every write in ``a`` is in ``b`` and ``b`` has more (``a`` happened before ``b``);
- ``AFTER``: the reverse;
- ``CONCURRENT``: each has a write the other has not seen.

``merge(a, b)`` (pointwise max) is the least vector that descends from both; it is
commutative, associative and idempotent, so replicas can merge in any order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from ..errors import InvalidInput


class Ordering(StrEnum):
    """How two version vectors (and the states they describe) are causally related."""

    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"


class VersionVector(Mapping[str, int]):
    """An immutable, hashable mapping writer id -> write counter (zero entries normalised away).

    Raises ``InvalidInput`` for an empty or non-string writer id or a negative / non-int counter.
    """

    __slots__ = ("_counters",)

    _counters: dict[str, int]

    def __init__(self, counters: Mapping[str, int] | None = None) -> None:
        items = dict(counters or {})
        for writer, count in items.items():
            _check_entry(writer, count)
        object.__setattr__(self, "_counters", {w: items[w] for w in sorted(items) if items[w] != 0})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("VersionVector is immutable")

    def __getitem__(self, writer: str) -> int:
        return self._counters[writer]

    def get_count(self, writer: str) -> int:
        """The writer's counter; 0 for a writer this vector has never seen."""
        return self._counters.get(writer, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._counters)

    def __len__(self) -> int:
        return len(self._counters)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionVector):
            return self._counters == other._counters
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._counters.items()))

    def __reduce__(self) -> tuple[type[VersionVector], tuple[dict[str, int]]]:
        return (VersionVector, (dict(self._counters),))

    def __repr__(self) -> str:
        return f"VersionVector({self._counters!r})"

    def bump(self, writer: str) -> VersionVector:
        """This vector with one more write by ``writer`` (strictly AFTER ``self``)."""
        _check_entry(writer, 0)
        return VersionVector({**self._counters, writer: self.get_count(writer) + 1})

    def descends(self, other: VersionVector) -> bool:
        """True when ``self`` has seen every write ``other`` has (``self >= other``)."""
        return all(self.get_count(w) >= c for w, c in other._counters.items())

    def dominates(self, other: VersionVector) -> bool:
        """True when ``self`` descends from ``other`` and has more (``self > other``)."""
        return self != other and self.descends(other)

    def to_json(self) -> dict[str, int]:
        return dict(self._counters)

    @classmethod
    def from_json(cls, obj: object) -> VersionVector:
        """Parse ``{"writer": counter, ...}``; anything else raises ``InvalidInput``."""
        if not isinstance(obj, Mapping):
            raise InvalidInput(
                "A version vector must be a JSON object of writer id -> counter",
                {"field": "vector", "got": type(obj).__name__},
            )
        return cls(obj)


def merge(a: VersionVector, b: VersionVector) -> VersionVector:
    """Pointwise max: the least vector that descends from both ``a`` and ``b``."""
    merged = dict(a.to_json())
    for writer, count in b.items():
        merged[writer] = max(merged.get(writer, 0), count)
    return VersionVector(merged)


def compare(a: VersionVector, b: VersionVector) -> Ordering:
    """How ``a`` relates to ``b``: EQUAL, BEFORE (a happened before b), AFTER or CONCURRENT."""
    a_ge = a.descends(b)
    b_ge = b.descends(a)
    if a_ge and b_ge:
        return Ordering.EQUAL
    if b_ge:
        return Ordering.BEFORE
    if a_ge:
        return Ordering.AFTER
    return Ordering.CONCURRENT


def _check_entry(writer: object, count: object) -> None:
    if not isinstance(writer, str) or not writer:
        raise InvalidInput(
            "A version vector's writer ids must be non-empty strings",
            {"field": "vector", "writer": repr(writer)},
        )
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidInput(
            f"Version vector counter for writer {writer!r} must be a non-negative integer",
            {"field": "vector", "writer": writer, "got": repr(count)},
        )
