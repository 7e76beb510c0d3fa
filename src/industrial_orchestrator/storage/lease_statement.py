"""PostgreSQL: a lease in one statement (``AttemptRepository.open``).

A lease writes four tables: the task from READY to RUNNING, the agent booked, the attempt
opened, the events logged under the session's next numbers. As separate statements in a
transaction that is seven round trips (BEGIN and COMMIT included), the most frequent
write of a fleet after the results. Here they are data-modifying CTEs of one statement,
each run only if the one before it wrote its row, so the statement is all or nothing by
itself and needs no transaction around it:

1. ``agent_ok`` locks the agent's row if it is still at the version the lease was
   computed from (a row changed meanwhile fails the re-check under the lock);
2. ``leased`` moves the task if it is still as read and no other claimer holds it
   (``SKIP LOCKED``: a claimer never waits for a task another is taking);
3. ``booked``, ``opened``, ``bumped`` and ``logged`` follow only from a row of the one
   before, and cannot fail once the agent's and the task's rows are held.

The locks come in the order every writer takes them: the agent's row before the task's
is safe because the task's is only ever tried, never waited for; then the session's row
(its event counter) and the event writer's registration last, as in
``SqlEventRepository.flush``.
The SET clauses are the columns the lease changes, so the statement is built once per
set of them (there is one in practice) and prepared once per connection.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.selectable import LateralFromClause

from .event_repository import LAST_GIVEN, writer_registration
from .tables import agents, events, sessions, task_attempts, tasks
from .task_repository import depends_on_column

# Every bound parameter's name starts with ``l_``, which no column's does: SQLAlchemy
# reads an execution's keys that name a column as that column's value.
TASK = "l_task_"
AGENT = "l_agent_"
ATTEMPT = "l_attempt_"
WAS = "l_was_"
"""The guards: the agent's and the task's rows as the lease was computed from."""


@functools.lru_cache(maxsize=32)
def lease_statement(
    task_keys: tuple[str, ...],
    agent_keys: tuple[str, ...],
    attempt_keys: tuple[str, ...],
    numbered: bool,
) -> sa.Select[Any]:
    """The statement for a lease that changes ``task_keys`` of the task's row and
    ``agent_keys`` of the agent's, and writes ``attempt_keys`` of the attempt's;
    ``numbered``: the task is a session's, whose events take the session's next
    numbers. Its rows: ``agent`` (1 when the agent's row was at
    the expected version) and ``logged`` (the events inserted: all of them when the
    task was free and everything was written, else none), beside each of the task's
    finished dependencies (``l_dependencies`` in state ``l_finished``), or beside NULLs
    when it has none."""
    agent_ok = (
        sa.select(agents.c.id)
        .where(
            agents.c.id == sa.bindparam("l_was_agent_id", type_=sa.Uuid),
            agents.c.version == sa.bindparam("l_was_agent_version", type_=sa.Integer),
        )
        .with_for_update()
        .cte("agent_ok")
    )
    free = (
        sa.select(tasks.c.id)
        .where(
            tasks.c.id == sa.bindparam("l_was_task_id", type_=sa.Uuid),
            tasks.c.version == sa.bindparam("l_was_task_version", type_=sa.Integer),
            tasks.c.status == sa.bindparam("l_was_task_status", type_=sa.String),
            sa.exists(sa.select(agent_ok.c.id)),
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    leased = (
        sa.update(tasks)
        .where(tasks.c.id == free)
        .values(
            {tasks.c[key]: sa.bindparam(TASK + key, type_=tasks.c[key].type) for key in task_keys}
        )
        .returning(tasks.c.id)
        .cte("leased")
    )
    booked = (
        sa.update(agents)
        .where(
            agents.c.id == sa.select(agent_ok.c.id).scalar_subquery(),
            sa.exists(sa.select(leased.c.id)),
        )
        .values(
            {
                agents.c[key]: sa.bindparam(AGENT + key, type_=agents.c[key].type)
                for key in agent_keys
            }
        )
        .returning(agents.c.id)
        .cte("booked")
    )
    opened = (
        sa.insert(task_attempts)
        .from_select(
            list(attempt_keys),
            sa.select(
                *(
                    sa.bindparam(ATTEMPT + key, type_=task_attempts.c[key].type)
                    for key in attempt_keys
                )
            ).where(sa.exists(sa.select(booked.c.id))),
        )
        .returning(task_attempts.c.task_id)
        .cte("opened")
    )
    count = sa.bindparam("l_count", type_=sa.Integer)
    lock: sa.Label[Any] = sa.literal_column(writer_registration("seen.v")).label("registered")
    session_id = sa.bindparam("l_session_id", type_=sa.Uuid)
    ordered: sa.Subquery
    if numbered:
        bumped = (
            sa.update(sessions)
            .where(sessions.c.id == session_id, sa.exists(sa.select(opened.c.task_id)))
            .values(event_seq=sessions.c.event_seq + count)
            .returning(sessions.c.event_seq)
            .cte("bumped")
        )
        # The last id given out is read once the session's row is held (a lateral
        # subquery of the bumped row), so readers are held back only from then on.
        seen = _last_given(bumped.c.event_seq.is_not(None))
        ordered = (
            sa.select(lock, bumped.c.event_seq.label("last"))
            .select_from(bumped.join(seen, sa.true()))
            .subquery("ordered")
        )
    else:  # a task outside any session: its events have no numbers
        ordered = (
            sa.select(lock, sa.null().label("last"))
            .select_from(_last_given(sa.true()))
            .where(sa.exists(sa.select(opened.c.task_id)))
            .subquery("ordered")
        )
    # The events' rows: arrays unnested in order, numbered from the bumped counter, with
    # the writer registered in the same subquery, before the first row takes its id.
    new = (
        sa.func.unnest(
            sa.bindparam("l_types", type_=ARRAY(sa.Text)),
            sa.bindparam("l_ats", type_=ARRAY(sa.DateTime(timezone=True))),
            sa.bindparam("l_payloads", type_=ARRAY(sa.Text)),
        )
        .table_valued("type", "at", "payload", with_ordinality="n")
        .render_derived(name="new")
    )
    logged = (
        sa.insert(events)
        .from_select(
            ["session_id", "seq", "type", "at", "payload"],
            sa.select(
                session_id,
                sa.cast(ordered.c["last"], sa.Integer) - count + new.c.n,
                new.c.type,
                new.c.at,
                sa.cast(new.c.payload, JSONB),
            )
            .select_from(ordered.join(new, sa.true()))
            .order_by(new.c.n),
        )
        .returning(events.c.id)
        .cte("logged")
    )
    outcome = sa.select(
        sa.select(sa.func.count()).select_from(agent_ok).scalar_subquery().label("agent"),
        sa.select(sa.func.count()).select_from(logged).scalar_subquery().label("logged"),
    ).subquery("outcome")
    # What the agent is told of the work before its task, in the same round trip.
    finished = (
        sa.select(tasks, depends_on_column("postgresql"))
        .where(
            tasks.c.id == sa.any_(sa.bindparam("l_dependencies", type_=ARRAY(sa.Uuid))),
            tasks.c.status == sa.any_(sa.bindparam("l_finished", type_=ARRAY(sa.Text))),
        )
        .subquery("finished")
    )
    return (
        sa.select(outcome, finished)
        .select_from(outcome.outerjoin(finished, sa.true()))
        .add_cte(booked, opened, logged)
    )


def _last_given(after: sa.ColumnElement[bool]) -> LateralFromClause:
    """The last event id given out (``seen.v``), read once ``after`` holds."""
    return sa.lateral(
        sa.select(sa.literal_column("v", sa.BigInteger))
        .select_from(sa.text(f"({LAST_GIVEN}) AS last_given"))
        .where(after),
        name="seen",
    )
