"""The committed tables of the in-memory database, and one transaction's view of them.

A transaction never changes the committed tables while it runs: what it writes goes into
its own overlay (row by key, or a tombstone), which its reads see on top of the committed
rows. ``commit`` folds the overlay in, all at once and without awaiting anything, so no
reader ever sees half a transaction; leaving without it drops the overlay. Writers take
one lock for their whole transaction (as SQLite's single writer does), so a writer's
view of the committed rows cannot change under it, and the family locks the ports name
are held already. Readers take no lock and see what is committed at each call
(PostgreSQL's READ COMMITTED).

Rows are the domain's frozen dataclasses; the JSON inside them is copied through
``json`` on the way in and on the way out, as a database round trip would, so nobody
changes a stored row by mutating what it was given or handed back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from ...domain.events import Event
from ...domain.storable_text import storable_json


class IntegrityViolation(Exception):
    """A write the SQL repositories let the database refuse with its own integrity error
    (a duplicate primary key, a missing parent row): a bug of the caller on every
    backend. Where the SQL repositories translate the refusal, this store raises the
    same ``DuplicateKeyError`` instead."""


_GONE = object()
"""An overlay's tombstone: the row is deleted in this transaction."""


def json_copy(value: Any) -> Any:
    """``value`` as a JSON column gives it back: a fresh copy, tuples made lists, text a
    database cannot keep made storable (as ``storage.database.storable_json_text``)."""
    text = json.dumps(value)
    if "\\u0000" in text or "\\ud" in text:
        text = json.dumps(storable_json(value))
    return json.loads(text)


class Store:
    """What a whole in-memory database holds: committed rows by table, the event log."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Hashable, Any]] = {}
        self.events: list[Event] = []
        """The committed log; an event's id is its place in it, from 1."""
        self.events_of_session: dict[Hashable, list[Event]] = {}
        self.writer = asyncio.Lock()

    def table(self, name: str) -> dict[Hashable, Any]:
        return self.tables.setdefault(name, {})


class Transaction:
    """One unit of work's reads and writes: the committed rows under its own overlay."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._overlay: dict[str, dict[Hashable, Any]] = {}

    @property
    def wrote(self) -> bool:
        return any(self._overlay.values())

    def get(self, table: str, key: Hashable) -> Any | None:
        changed = self._overlay.get(table)
        if changed is not None and key in changed:
            row = changed[key]
            return None if row is _GONE else row
        return self.store.table(table).get(key)

    def rows(self, table: str) -> Iterator[Any]:
        """Every row of ``table`` this transaction sees (in no particular order)."""
        changed = self._overlay.get(table) or {}
        for key, row in self.store.table(table).items():
            if key not in changed:
                yield row
        for row in changed.values():
            if row is not _GONE:
                yield row

    def select(self, table: str, where: Callable[[Any], bool]) -> list[Any]:
        return [row for row in self.rows(table) if where(row)]

    def put(self, table: str, key: Hashable, row: Any) -> None:
        self._overlay.setdefault(table, {})[key] = row

    def delete(self, table: str, key: Hashable) -> bool:
        if self.get(table, key) is None:
            return False
        self._overlay.setdefault(table, {})[key] = _GONE
        return True

    def apply(self, events: list[Event]) -> None:
        """Make the overlay and ``events`` (numbered already) committed state, at once."""
        for name, changed in self._overlay.items():
            committed = self.store.table(name)
            for key, row in changed.items():
                if row is _GONE:
                    committed.pop(key, None)
                else:
                    committed[key] = row
        for event in events:
            self.store.events.append(event)
            if event.session_id is not None:
                self.store.events_of_session.setdefault(event.session_id, []).append(event)
        self.discard()

    def discard(self) -> None:
        self._overlay = {}
