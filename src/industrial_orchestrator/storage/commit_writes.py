"""Writes that wait for the commit and join its last statement (PostgreSQL).

A use case's last write of a row (a guarded update whose caller only needs it to hold, a
delete) need not cost a round trip of its own: on PostgreSQL it is kept until
``commit()`` and becomes a data-modifying CTE of the statement that numbers and inserts
the transaction's events (``SqlEventRepository.flush``), or of one statement of the
writes alone when the events need more than that one. A result's writes (its attempt
closed, its task, its agent, its temporary contexts, the tasks it opens) and its events
are one round trip instead of six.

Each write names the error for a guard that did not hold (it changed no row): the commit
raises it, and the unit of work rolls the whole transaction back, as the caller would
have on the spot.

The writes take their row locks before anything after them: the tail (the counter's
bump) waits for their counts (``written``), so the session's row and then the event
writer's registration are taken last, in the order the statements one by one would take
them.

A write kept here is not seen by the transaction's reads: a caller keeps only a row's
last write, and each row's once (an UPDATE of one row twice in one statement keeps one
of the two, unpredictably: refused here). Where a round trip costs next to nothing
(SQLite, in process) the write runs at once and raises its error at once, which a caller
that reads nothing of it afterwards cannot tell apart.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from .direct_execution import fetch_composed, run


@dataclass(frozen=True, slots=True)
class _Write:
    statement: Executable
    params: Mapping[str, Any]
    stale: Exception | None
    """Raised when the write changed no row; None: a write that may change none."""


class CommitWrites:
    """The writes one unit of work keeps for its commit."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._db = connection
        self._pending: dict[tuple[str, Hashable], _Write] = {}

    async def add(
        self,
        row: tuple[str, Hashable],
        statement: Executable,
        params: Mapping[str, Any],
        *,
        stale: Exception | None,
    ) -> None:
        """Write ``row`` (its table and key) by ``statement`` (an INSERT, UPDATE or
        DELETE without RETURNING) at the commit; ``stale``: the error for a write that
        changed no row (None: none may be fine)."""
        if self._db.dialect.name != "postgresql":
            changed = await run(self._db, statement, params)
            if stale is not None and changed < 1:
                raise stale
            return
        if row in self._pending:
            raise ValueError(f"{row} is written twice at the commit: write its last state once")
        self._pending[row] = _Write(statement, dict(params), stale)

    async def flush(self, tail: tuple[Executable, Mapping[str, Any]] | None = None) -> int | None:
        """Run the kept writes, with ``tail`` in the same statement: CTE definitions that
        follow the writes (they may read ``written``, one row that is all the writes'
        counts, to come after them), the last of them named ``tail``. Returns the rows
        ``tail`` returned, or None when it was not run (nothing was kept, or a write cannot
        run directly: they run one by one). Raises the first failed write's error."""
        writes = list(self._pending.values())
        self._pending.clear()
        if not writes:
            return None
        parts = [(write.statement, write.params) for write in writes]
        row = await fetch_composed(
            self._db,
            parts if tail is None else [*parts, tail],
            _writes_alone if tail is None else _writes_and_tail,
        )
        if row is None:
            for write in writes:
                changed = await run(self._db, write.statement, write.params)
                if write.stale is not None and changed < 1:
                    raise write.stale
            return None
        for number, write in enumerate(writes):
            if write.stale is not None and row[f"w{number}"] < 1:
                raise write.stale
        return None if tail is None else int(row["tail"])


def _written(writes: list[str]) -> tuple[str, tuple[str, ...]]:
    """The writes' CTEs, then ``written``: their counts, in one row."""
    keys = tuple(f"w{number}" for number in range(len(writes)))
    ctes = ", ".join(f"{key} AS ({sql} RETURNING 1)" for key, sql in zip(keys, writes, strict=True))
    counts = ", ".join(f"(SELECT count(*) FROM {key}) AS {key}" for key in keys)
    return f"WITH {ctes}, written AS (SELECT {counts})", keys


def _writes_alone(texts: list[str]) -> tuple[str, tuple[str, ...]]:
    head, keys = _written(texts)
    return f"{head} SELECT * FROM written", keys


def _writes_and_tail(texts: list[str]) -> tuple[str, tuple[str, ...]]:
    head, keys = _written(texts[:-1])
    return (
        f"{head}, {texts[-1]} SELECT written.*, (SELECT count(*) FROM tail) AS tail FROM written",
        (*keys, "tail"),
    )
