"""Sessions and their transition history (``storage/session_repository.py`` in memory).

A session's row holds more than the domain's ``Session``: the event and checkpoint
counters, the engine's ownership lease and timers, the idempotency key, and the working
tree (written once by ``bind_worktree``, never by ``add`` or ``save``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ...domain.sessions.session import (
    Session,
    Transition,
    WorktreeBinding,
    session_fields,
    session_from_fields,
)
from ...domain.sessions.states import RUNNING_STATES, SessionState
from ...services.ports import DuplicateKeyError, IdempotentCreation, SessionQuery, SessionTotals
from .store import IntegrityViolation, Transaction, json_copy

SESSIONS = "sessions"
TRANSITIONS = "session_transitions"
RUNNING_SLOTS = "running_slots"

# Fields of a Session that only their own methods write (``bind_worktree``,
# ``checkpoint_checked``), never ``add`` or ``save``.
_ROW_ONLY = frozenset({"worktree", "checkpoint_checked_at"})
# The Session fields that are columns of the row (``save`` writes those that changed).
_COLUMNS = tuple(f.name for f in dataclasses.fields(Session) if f.name not in _ROW_ONLY)


@dataclass(frozen=True, slots=True)
class SessionRow:
    session: Session
    """As stored: its ``worktree`` and ``checkpoint_checked_at`` are always None (the
    row's own are below)."""
    event_seq: int = 0
    checkpoint_seq: int = 0
    idempotency_key: str | None = None
    idempotency_hash: str | None = None
    owner: str | None = None
    owner_expires_at: datetime | None = None
    next_due_at: datetime | None = None
    worktree: WorktreeBinding | None = None
    checkpoint_checked_at: datetime | None = None

    def evolve(self, **changes: Any) -> SessionRow:
        return dataclasses.replace(self, **changes)


def stored(session: Session) -> Session:
    """``session`` as its row keeps it: its plain values and back (``session_fields``, as
    the SQL row), the JSON columns copied; without the working tree and checkpoint clock
    that ``add`` and ``save`` do not write (the row's own fields hold them)."""
    fields = session_fields(session)
    fields.update(
        metadata=json_copy(fields["metadata"]),
        options=json_copy(fields["options"]),
        worktree=None,
        branch=None,
        base_commit=None,
        checkpoint_checked_at=None,
    )
    return session_from_fields(fields)


def _read(row: SessionRow) -> Session:
    return row.session.evolve(
        metadata=json_copy(row.session.metadata),
        worktree=row.worktree,
        checkpoint_checked_at=row.checkpoint_checked_at,
    )


@dataclass(frozen=True, slots=True)
class RunningSlot:
    number: int
    holder: UUID | None


def _oldest_first(row: SessionRow) -> tuple[datetime, UUID]:
    return row.session.created_at, row.session.id


class MemorySessionRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def row(self, session_id: UUID) -> SessionRow | None:
        found: SessionRow | None = self._tx.get(SESSIONS, session_id)
        return found

    def put(self, row: SessionRow) -> None:
        self._tx.put(SESSIONS, row.session.id, row)

    def _rows(self) -> list[SessionRow]:
        return list(self._tx.rows(SESSIONS))

    async def add(
        self, session: Session, idempotency_key: str | None, request_hash: str | None
    ) -> None:
        # The SQL one turns every integrity error of the INSERT into DuplicateKeyError:
        # the primary key, the idempotency key, one retry per session, and retry_of's
        # foreign key.
        if self.row(session.id) is not None:
            raise DuplicateKeyError(f"session {session.id} exists")
        for other in self._rows():
            if idempotency_key is not None and other.idempotency_key == idempotency_key:
                raise DuplicateKeyError(f"idempotency key {idempotency_key!r} is taken")
            if session.retry_of is not None and other.session.retry_of == session.retry_of:
                raise DuplicateKeyError(f"session {session.retry_of} is retried already")
        if session.retry_of is not None and self.row(session.retry_of) is None:
            raise DuplicateKeyError(f"retry_of {session.retry_of}: no such session")
        self.put(SessionRow(stored(session), 0, 0, idempotency_key, request_hash))

    async def get(self, session_id: UUID) -> Session | None:
        row = self.row(session_id)
        return _read(row) if row else None

    async def find_retry(self, session_id: UUID) -> Session | None:
        for row in self._rows():
            if row.session.retry_of == session_id:
                return _read(row)
        return None

    async def forks_of(self, session_id: UUID) -> list[UUID]:
        forks = [row for row in self._rows() if row.session.forked_from == session_id]
        return [row.session.id for row in sorted(forks, key=_oldest_first)]

    async def on_workspace(self, workspace: str, *, limit: int) -> list[Session]:
        found = [
            row
            for row in self._rows()
            if row.session.workspace == workspace and row.worktree is not None
        ]
        # created_at descending, then id ascending.
        found.sort(key=lambda row: row.session.id)
        found.sort(key=lambda row: row.session.created_at, reverse=True)
        return [_read(row) for row in found[:limit]]

    async def get_by_idempotency_key(self, key: str) -> IdempotentCreation | None:
        for row in self._rows():
            if row.idempotency_key == key:
                return IdempotentCreation(_read(row), row.idempotency_hash or "")
        return None

    async def save(self, before: Session, after: Session, *, reserve_events: int = 0) -> int | None:
        row = self.row(before.id)
        if row is None or (row.session.version, row.session.status) != (
            before.version,
            before.status,
        ):
            return None
        # Only the columns that changed: the others keep what the row has (the usage
        # totals ``add_usage`` increments without a version, for one).
        changes = {
            column: getattr(after, column)
            for column in _COLUMNS
            if getattr(before, column) != getattr(after, column)
        }
        session = stored(row.session.evolve(**changes)) if changes else row.session
        saved = row.evolve(session=session, event_seq=row.event_seq + reserve_events)
        if session.id != before.id:
            self._tx.delete(SESSIONS, before.id)
        self.put(saved)
        return saved.event_seq

    async def add_transition(self, record: Transition) -> None:
        if self.row(record.session_id) is None:
            raise IntegrityViolation(f"transition of unknown session {record.session_id}")
        key = (record.session_id, record.seq)
        if self._tx.get(TRANSITIONS, key) is not None:
            raise IntegrityViolation(f"transition {key} exists")
        self._tx.put(TRANSITIONS, key, record)

    async def transitions(self, session_id: UUID) -> list[Transition]:
        found: list[Transition] = self._tx.select(
            TRANSITIONS, lambda record: record.session_id == session_id
        )
        return sorted(found, key=lambda record: record.seq)

    async def search(self, query: SessionQuery) -> tuple[list[Session], int]:
        statuses, priorities = set(query.statuses), set(query.priorities)
        # SQL's lower(...) LIKE lower(...): a case-insensitive substring. (SQLite's
        # lower() folds ASCII letters only; PostgreSQL's folds the others too, as here.)
        text = query.text.lower() if query.text else None

        def matches(session: Session) -> bool:
            return (
                (not statuses or session.status in statuses)
                and (not priorities or session.priority in priorities)
                and (
                    text is None
                    or text in session.title.lower()
                    or text in session.initial_prompt.lower()
                )
            )

        found = sorted(
            (row for row in self._rows() if matches(row.session)), key=_oldest_first, reverse=True
        )
        page = found[query.offset : query.offset + query.limit]
        return [_read(row) for row in page], len(found)

    async def count_running(self) -> int:
        return sum(1 for row in self._rows() if row.session.status in RUNNING_STATES)

    async def ids_in(self, states: Sequence[SessionState]) -> list[UUID]:
        wanted = set(states)
        found = [row for row in self._rows() if row.session.status in wanted]
        return [row.session.id for row in sorted(found, key=_oldest_first)]

    async def own(self, session_id: UUID, owner: str, now: datetime, until: datetime) -> str | None:
        row = self.row(session_id)
        if row is None:
            return None
        previous = row.owner
        free = (
            previous is None
            or previous == owner
            or (row.owner_expires_at is not None and row.owner_expires_at < now)
        )
        if not free:
            return None
        self.put(row.evolve(owner=owner, owner_expires_at=until))
        return previous if previous not in (None, owner) else owner

    async def keep(
        self, session_id: UUID, owner: str, now: datetime, until: datetime
    ) -> bool | None:
        row = self.row(session_id)
        if row is None:
            return False
        if row.owner not in (None, owner):
            lapsed = row.owner_expires_at is not None and row.owner_expires_at < now
            return None if lapsed else False
        self.put(row.evolve(owner=owner, owner_expires_at=until))
        return True

    async def disown(self, owner: str, session_id: UUID | None = None) -> int:
        held = [
            row
            for row in self._rows()
            if row.owner == owner and (session_id is None or row.session.id == session_id)
        ]
        for row in held:
            self.put(row.evolve(owner=None, owner_expires_at=None))
        return len(held)

    async def renew_owned(
        self, owner: str, states: Sequence[SessionState], until: datetime
    ) -> list[UUID]:
        wanted = set(states)
        held = [row for row in self._rows() if row.owner == owner and row.session.status in wanted]
        for row in held:
            self.put(row.evolve(owner_expires_at=until))
        return [row.session.id for row in held]

    async def unowned_in(self, states: Sequence[SessionState], now: datetime) -> list[UUID]:
        wanted = set(states)
        return [
            row.session.id
            for row in self._rows()
            if row.session.status in wanted
            and (
                row.owner is None
                or (row.owner_expires_at is not None and row.owner_expires_at < now)
            )
        ]

    async def forget_owners(self) -> int:
        owned = [row for row in self._rows() if row.owner is not None]
        for row in owned:
            self.put(row.evolve(owner=None, owner_expires_at=None))
        return len(owned)

    async def set_next_due(self, session_id: UUID, at: datetime | None) -> None:
        row = self.row(session_id)
        if row is not None:
            self.put(row.evolve(next_due_at=at))

    async def checkpoint_checked(self, session_id: UUID, at: datetime) -> None:
        row = self.row(session_id)
        if row is not None:
            self.put(row.evolve(checkpoint_checked_at=at))

    async def take_due(
        self, owner: str, states: Sequence[SessionState], now: datetime
    ) -> list[UUID]:
        wanted = set(states)
        due = [
            row
            for row in self._rows()
            if row.owner == owner
            and row.next_due_at is not None
            and row.next_due_at <= now
            and row.session.status in wanted
        ]
        for row in due:
            self.put(row.evolve(next_due_at=None))
        return [row.session.id for row in due]

    async def bind_worktree(self, session_id: UUID, binding: WorktreeBinding) -> bool:
        row = self.row(session_id)
        if row is None or row.worktree is not None:
            return False
        self.put(row.evolve(worktree=binding))
        return True

    async def take_running_slot(
        self, session_id: UUID, capacity: int, *, new: bool = False
    ) -> bool:
        # Writers run one at a time (``store``): no taker can be between the look and
        # the write.
        slots = list(self._tx.rows(RUNNING_SLOTS))
        if any(s.holder == session_id for s in slots):
            return False
        if any(s.number > capacity and s.holder is not None for s in slots):
            return False
        free = sorted(s.number for s in slots if s.holder is None and s.number <= capacity)
        if free:
            number = free[0]
        else:
            # Made as first needed (the SQL one picks the number at random).
            numbers = {s.number for s in slots}
            missing = next((n for n in range(1, capacity + 1) if n not in numbers), None)
            if missing is None:
                return False
            number = missing
        self._tx.put(RUNNING_SLOTS, number, RunningSlot(number, session_id))
        return True

    async def lock_queue(self) -> None:
        """Held already: writers run one at a time (``store``)."""

    async def give_back_running_slot(self, session_id: UUID) -> None:
        for slot in list(self._tx.rows(RUNNING_SLOTS)):
            if slot.holder == session_id:
                self._tx.put(RUNNING_SLOTS, slot.number, RunningSlot(slot.number, None))

    async def anyone_queued(self) -> bool:
        return any(row.session.status is SessionState.QUEUED for row in self._rows())

    async def next_queued(self) -> Session | None:
        queued = [row for row in self._rows() if row.session.status is SessionState.QUEUED]
        if not queued:
            return None
        first = min(
            queued,
            key=lambda row: (-row.session.priority.rank, row.session.created_at, row.session.id),
        )
        return _read(first)

    async def totals(self) -> SessionTotals:
        by_state = {state: 0 for state in SessionState}
        durations: list[float] = []
        tokens, cost = 0, 0.0
        for row in self._rows():
            session = row.session
            by_state[session.status] += 1
            if session.duration_seconds is not None:
                durations.append(session.duration_seconds)
            tokens += session.tokens_used
            cost += session.cost_usd
        average = sum(durations) / len(durations) if durations else None
        return SessionTotals(by_state, average, tokens, cost)

    async def next_checkpoint_seq(
        self, session_id: UUID, *, unless_in: Sequence[SessionState] = (), count: int = 1
    ) -> int | None:
        row = self.row(session_id)
        if row is None:
            raise LookupError(session_id)
        if row.session.status in unless_in:
            return None
        self.put(row.evolve(checkpoint_seq=row.checkpoint_seq + count))
        return row.checkpoint_seq + 1

    async def add_usage(self, session_id: UUID, tokens: int, cost_usd: float) -> None:
        row = self.row(session_id)
        if row is None:
            return
        session = row.session.evolve(
            tokens_used=row.session.tokens_used + tokens, cost_usd=row.session.cost_usd + cost_usd
        )
        self.put(row.evolve(session=session))

    def bump_events(self, session_id: UUID, count: int) -> int:
        """Take ``count`` event numbers of the session's counter; the last one taken."""
        row = self.row(session_id)
        if row is None:
            raise LookupError(session_id)
        self.put(row.evolve(event_seq=row.event_seq + count))
        return row.event_seq + count
