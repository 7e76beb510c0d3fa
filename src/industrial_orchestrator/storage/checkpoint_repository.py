"""Checkpoints, newest first, pruned to the retention limit."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.effects import Effect, EffectState
from ..domain.events import NewEvent
from ..domain.sessions.checkpoint import Checkpoint
from ..domain.sessions.session import Session
from ..domain.sessions.states import SessionState
from ..domain.tasks.task import Task
from ..services.ports import check_added_after
from .database import storable_json_text
from .direct_execution import fetch_all, fetch_first, run
from .effect_repository import SqlEffectRepository
from .event_repository import LAST_GIVEN, SqlEventRepository, writer_registration
from .rows import checkpoint_from_row, checkpoint_values, prefixed, session_from_row, unprefixed
from .session_repository import SqlSessionRepository
from .tables import checkpoints, sessions
from .task_repository import SqlTaskRepository, session_and_tasks, session_with_tasks

# Built once (read on every engine step): a built statement keeps its cache key.
_LATEST = (
    sa.select(checkpoints)
    .where(checkpoints.c.session_id == sa.bindparam("session_id"))
    .order_by(checkpoints.c.seq.desc())
    .limit(1)
)
_INSERT = sa.insert(checkpoints)
_SESSION = sa.select(sessions).where(sessions.c.id == sa.bindparam("session_id"))
# The newest checkpoint's columns beside the session's, under names no session column has.
_LATEST_PREFIX = "latest_checkpoint_"


# PostgreSQL: a commit's checkpoints numbered, stored and their ledger entries marked DONE
# in one statement (where it took a statement each, and one more for the numbers). The
# entries are marked only if the numbers were taken: the session is still open.
_ADD_NUMBERED = sa.text(
    "WITH numbered AS ("
    " UPDATE sessions SET checkpoint_seq = checkpoint_seq + :count"
    " WHERE id = :session_id AND NOT (status = ANY(:unless_in))"
    " RETURNING checkpoint_seq - :count_again AS before"
    "), stored AS ("
    " INSERT INTO checkpoints (id, session_id, seq, label, reason, data, created_at)"
    " SELECT new.id, :stored_session_id, numbered.before + new.n, new.label, new.reason,"
    " CAST(new.data AS JSONB), new.created_at"
    " FROM numbered, unnest(:ids, :labels, :reasons, :datas, :created_ats)"
    " WITH ORDINALITY AS new(id, label, reason, data, created_at, n)"
    "), done AS ("
    f" UPDATE effects SET state = '{EffectState.DONE.value}',"
    " detail = CAST(finished.detail AS JSONB), done_at = finished.done_at"
    " FROM numbered, unnest(:keys, :details, :done_ats) AS finished(key, detail, done_at)"
    f" WHERE effects.key = finished.key AND effects.state = '{EffectState.PENDING.value}'"
    " RETURNING effects.key"
    ") SELECT (SELECT before FROM numbered) AS before, (SELECT count(*) FROM done) AS done,"
    " EXISTS (SELECT 1 FROM sessions WHERE id = :known_session_id) AS known"
).bindparams(
    sa.bindparam("count", type_=sa.Integer),
    sa.bindparam("count_again", type_=sa.Integer),
    sa.bindparam("session_id", type_=sa.Uuid),
    sa.bindparam("stored_session_id", type_=sa.Uuid),
    sa.bindparam("known_session_id", type_=sa.Uuid),
    sa.bindparam("unless_in", type_=ARRAY(sa.String)),
    sa.bindparam("ids", type_=ARRAY(sa.Uuid)),
    sa.bindparam("labels", type_=ARRAY(sa.String)),
    sa.bindparam("reasons", type_=ARRAY(sa.String)),
    sa.bindparam("datas", type_=ARRAY(sa.Text)),
    sa.bindparam("created_ats", type_=ARRAY(sa.DateTime(timezone=True))),
    sa.bindparam("keys", type_=ARRAY(sa.String)),
    sa.bindparam("details", type_=ARRAY(sa.Text)),
    sa.bindparam("done_ats", type_=ARRAY(sa.DateTime(timezone=True))),
)


# PostgreSQL: checkpoints whose numbers the caller knows (the session's last checkpoint
# was ``after_seq``), stored with their events in one statement that needs no transaction
# around it: four round trips (BEGIN, the numbers, the events, COMMIT) became one, after
# each engine step that records a task's checkpoint. The session's row is updated once
# (an UPDATE of one row twice in one statement keeps one of the two): both counters, only
# while its last checkpoint is ``after_seq`` and its state not one of ``unless_in``; the
# rest follows only from that row. The events are numbered under its lock and the writer
# registers after it, as ``SqlEventRepository.flush`` does; the checkpoints beyond the
# retention (numbers below ``keep_from``) go in the same statement.
_ADD_AFTER = sa.text(
    "WITH numbered AS ("
    " UPDATE sessions SET checkpoint_seq = checkpoint_seq + :count,"
    " event_seq = event_seq + :event_count"
    " WHERE id = :session_id AND checkpoint_seq = :after_seq"
    " AND NOT (status = ANY(:unless_in))"
    " RETURNING event_seq"
    "), stored AS ("
    " INSERT INTO checkpoints (id, session_id, seq, label, reason, data, created_at)"
    " SELECT new.id, :stored_session_id, :stored_after_seq + new.n, new.label, new.reason,"
    " CAST(new.data AS JSONB), new.created_at"
    " FROM numbered, unnest(:ids, :labels, :reasons, :datas, :created_ats)"
    " WITH ORDINALITY AS new(id, label, reason, data, created_at, n)"
    " RETURNING 1"
    "), pruned AS ("
    " DELETE FROM checkpoints USING numbered"
    " WHERE checkpoints.session_id = :pruned_session_id AND checkpoints.seq < :keep_from"
    " RETURNING 1"
    "), logged AS ("
    " INSERT INTO events (session_id, seq, type, at, payload)"
    " SELECT :logged_session_id, ordered.last - :logged_count + new.n, new.type, new.at,"
    " CAST(new.payload AS JSONB)"
    f" FROM (SELECT {writer_registration('seen.v')}, numbered.event_seq AS last"
    f" FROM numbered CROSS JOIN LATERAL ({LAST_GIVEN}) AS seen) AS ordered,"
    " unnest(:types, :ats, :payloads) WITH ORDINALITY AS new(type, at, payload, n)"
    " ORDER BY new.n"
    " RETURNING 1"
    ") SELECT (SELECT count(*) FROM stored) AS stored, (SELECT count(*) FROM logged) AS logged,"
    " (SELECT count(*) FROM pruned) AS pruned,"
    " EXISTS (SELECT 1 FROM sessions WHERE id = :known_session_id) AS known"
).bindparams(
    sa.bindparam("count", type_=sa.Integer),
    sa.bindparam("event_count", type_=sa.Integer),
    sa.bindparam("session_id", type_=sa.Uuid),
    sa.bindparam("after_seq", type_=sa.Integer),
    sa.bindparam("unless_in", type_=ARRAY(sa.String)),
    sa.bindparam("stored_session_id", type_=sa.Uuid),
    sa.bindparam("stored_after_seq", type_=sa.Integer),
    sa.bindparam("ids", type_=ARRAY(sa.Uuid)),
    sa.bindparam("labels", type_=ARRAY(sa.String)),
    sa.bindparam("reasons", type_=ARRAY(sa.String)),
    sa.bindparam("datas", type_=ARRAY(sa.Text)),
    sa.bindparam("created_ats", type_=ARRAY(sa.DateTime(timezone=True))),
    sa.bindparam("pruned_session_id", type_=sa.Uuid),
    sa.bindparam("keep_from", type_=sa.Integer),
    sa.bindparam("logged_session_id", type_=sa.Uuid),
    sa.bindparam("logged_count", type_=sa.Integer),
    sa.bindparam("types", type_=ARRAY(sa.Text)),
    sa.bindparam("ats", type_=ARRAY(sa.DateTime(timezone=True))),
    sa.bindparam("payloads", type_=ARRAY(sa.Text)),
    sa.bindparam("known_session_id", type_=sa.Uuid),
)


def _latest() -> Any:
    """A session's newest checkpoint, to join laterally with its row (on the
    checkpoints' (session, seq) index)."""
    return (
        sa.select(checkpoints)
        .where(checkpoints.c.session_id == sessions.c.id)
        .order_by(checkpoints.c.seq.desc())
        .limit(1)
        .lateral("latest")
    )


@functools.cache
def _session_and_latest() -> Any:
    """PostgreSQL: the session and its newest checkpoint in one statement."""
    latest = _latest()
    return (
        sa.select(sessions, *prefixed(latest.c, _LATEST_PREFIX))
        .select_from(sessions.outerjoin(latest, sa.true()))
        .where(sessions.c.id == sa.bindparam("session_id"))
    )


@functools.cache
def _session_latest_and_tasks() -> Any:
    """PostgreSQL: the session and its tasks (``session_with_tasks``) with its newest
    checkpoint beside each row."""
    latest = _latest()
    return session_with_tasks(*prefixed(latest.c, _LATEST_PREFIX), joins=[(latest, sa.true())])


class SqlCheckpointRepository:
    def __init__(self, connection: AsyncConnection, events: SqlEventRepository) -> None:
        self._db = connection
        self._events = events

    async def add(self, checkpoint: Checkpoint) -> None:
        await run(self._db, _INSERT, checkpoint_values(checkpoint))

    async def prune(self, session_id: UUID, keep_from_seq: int) -> int:
        result = await self._db.execute(
            sa.delete(checkpoints).where(
                checkpoints.c.session_id == session_id, checkpoints.c.seq < keep_from_seq
            )
        )
        return int(result.rowcount or 0)

    async def get(self, checkpoint_id: UUID) -> Checkpoint | None:
        result = await self._db.execute(
            sa.select(checkpoints).where(checkpoints.c.id == checkpoint_id)
        )
        row = result.mappings().first()
        return checkpoint_from_row(row) if row else None

    async def latest(self, session_id: UUID) -> Checkpoint | None:
        row = await fetch_first(self._db, _LATEST, {"session_id": session_id})
        return checkpoint_from_row(row) if row else None

    async def add_numbered(
        self,
        session_id: UUID,
        drafts: Sequence[Checkpoint],
        finishing: Sequence[Effect],
        *,
        unless_in: Sequence[SessionState] = (),
    ) -> tuple[list[Checkpoint], int] | None:
        if self._db.dialect.name != "postgresql":
            first = await SqlSessionRepository(self._db).next_checkpoint_seq(
                session_id, unless_in=unless_in, count=len(drafts)
            )
            if first is None:
                return None
            stored = [replace(draft, seq=first + n) for n, draft in enumerate(drafts)]
            for checkpoint in stored:
                await self.add(checkpoint)
            ledger = SqlEffectRepository(self._db)
            return stored, sum([await ledger.finish(effect) for effect in finishing])
        row = await fetch_first(
            self._db,
            _ADD_NUMBERED,
            {
                "count": len(drafts),
                "count_again": len(drafts),
                "session_id": session_id,
                "stored_session_id": session_id,
                "known_session_id": session_id,
                "unless_in": [state.value for state in unless_in],
                "ids": [draft.id for draft in drafts],
                "labels": [draft.label for draft in drafts],
                "reasons": [draft.reason for draft in drafts],
                "datas": [storable_json_text(draft.data) for draft in drafts],
                "created_ats": [draft.created_at for draft in drafts],
                "keys": [effect.key for effect in finishing],
                "details": [storable_json_text(effect.detail) for effect in finishing],
                "done_ats": [effect.done_at for effect in finishing],
            },
        )
        assert row is not None  # a SELECT without FROM: always one row
        if row["before"] is None:
            if row["known"]:
                return None
            raise LookupError(session_id)
        before = int(row["before"])
        stored = [replace(draft, seq=before + n) for n, draft in enumerate(drafts, start=1)]
        return stored, int(row["done"])

    async def add_after(
        self,
        session_id: UUID,
        numbered: Sequence[Checkpoint],
        new: Sequence[NewEvent],
        *,
        after_seq: int,
        keep_from: int,
        unless_in: Sequence[SessionState] = (),
    ) -> bool | None:
        check_added_after(numbered, after_seq, keep_from)
        if self._db.dialect.name != "postgresql":
            try:
                added = await self.add_numbered(session_id, numbered, [], unless_in=unless_in)
            except LookupError:
                return None
            if added is None or [c.seq for c in added[0]] != [c.seq for c in numbered]:
                return False  # the caller leaves without a commit: nothing stays
            if keep_from > 1:
                await self.prune(session_id, keep_from)
            await self._events.append(new)
            return True
        row = await fetch_first(
            self._db,
            _ADD_AFTER,
            {
                "count": len(numbered),
                "event_count": len(new),
                "session_id": session_id,
                "after_seq": after_seq,
                "unless_in": [state.value for state in unless_in],
                "stored_session_id": session_id,
                "stored_after_seq": after_seq,
                "ids": [c.id for c in numbered],
                "labels": [c.label for c in numbered],
                "reasons": [c.reason for c in numbered],
                "datas": [storable_json_text(c.data) for c in numbered],
                "created_ats": [c.created_at for c in numbered],
                "pruned_session_id": session_id,
                "keep_from": keep_from,
                "logged_session_id": session_id,
                "logged_count": len(new),
                "types": [event.type.value for event in new],
                "ats": [event.at for event in new],
                "payloads": [storable_json_text(event.payload) for event in new],
                "known_session_id": session_id,
            },
        )
        assert row is not None  # a SELECT without FROM: always one row
        if row["stored"]:
            if row["logged"] != len(new):  # numbered under the row it just updated
                raise LookupError(session_id)
            self._events.stored_apart(new)
            return True
        return False if row["known"] else None

    async def latest_with_session(
        self, session_id: UUID
    ) -> tuple[Session | None, Checkpoint | None]:
        if self._db.dialect.name != "postgresql":
            row = await fetch_first(self._db, _SESSION, {"session_id": session_id})
            if row is None:
                return None, None
            return session_from_row(row), await self.latest(session_id)
        row = await fetch_first(self._db, _session_and_latest(), {"session_id": session_id})
        if row is None:
            return None, None
        latest = unprefixed(row, _LATEST_PREFIX, "id")
        return session_from_row(row), checkpoint_from_row(latest) if latest else None

    async def latest_with_plan(
        self, session_id: UUID
    ) -> tuple[Session | None, Checkpoint | None, list[Task]]:
        if self._db.dialect.name != "postgresql":
            session, latest = await self.latest_with_session(session_id)
            found = await SqlTaskRepository(self._db).of_session(session_id) if session else []
            return session, latest, found
        rows = await fetch_all(self._db, _session_latest_and_tasks(), {"session_id": session_id})
        session, found = session_and_tasks(rows)
        newest = unprefixed(rows[0], _LATEST_PREFIX, "id") if rows else None
        return session, checkpoint_from_row(newest) if newest else None, found

    async def list(self, session_id: UUID, offset: int, limit: int) -> tuple[list[Checkpoint], int]:
        total = await self._db.scalar(
            sa.select(sa.func.count())
            .select_from(checkpoints)
            .where(checkpoints.c.session_id == session_id)
        )
        result = await self._db.execute(
            sa.select(checkpoints)
            .where(checkpoints.c.session_id == session_id)
            .order_by(checkpoints.c.seq.desc())
            .offset(offset)
            .limit(limit)
        )
        return [checkpoint_from_row(row) for row in result.mappings()], int(total or 0)
