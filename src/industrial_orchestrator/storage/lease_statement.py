"""PostgreSQL: a lease in one statement (``AttemptRepository.open``).

A lease writes four tables: the task from READY to RUNNING, the agent booked, the attempt
opened, the events logged under the session's next numbers. As separate statements in a
transaction that is seven round trips (BEGIN and COMMIT included), the most frequent
write of a fleet after the results. Here they are data-modifying CTEs of one statement,
each run only if the one before it wrote its row, so the statement is all or nothing by
itself and needs no transaction around it:

1. ``agent_ok`` locks the agent's row if it is still at the version the lease was
   computed from (a row changed meanwhile fails the re-check under the lock);
2. ``free`` picks, of the candidates in the order given, the first task still as read
   that no other claimer holds (``SKIP LOCKED``: a claimer never waits for a task
   another is taking), and ``leased`` moves it;
3. ``booked``, ``opened``, ``bumped`` and ``logged`` follow only from a row of the one
   before, and cannot fail once the agent's and the task's rows are held.

A claim's candidates are the READY tasks its look found: agents woken by one commit look
at the same tasks, and in several processes none knows what the others are taking. One
statement for all of them leases the first still free, where a statement per task would
cost a round trip for each one taken meanwhile. What differs between the candidates
(their versions, attempts, events, sessions) comes as arrays, each candidate's values at
its position (``free.n``); what they share, as single values.

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
from sqlalchemy.sql.elements import Grouping
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


@functools.lru_cache(maxsize=64)
def lease_statement(
    task_keys: tuple[str, ...],
    task_arrays: frozenset[str],
    agent_keys: tuple[str, ...],
    attempt_keys: tuple[str, ...],
    attempt_arrays: frozenset[str],
    numbered: bool,
) -> sa.Select[Any]:
    """The statement for a lease of one of the candidates (``l_was_task_ids``, in order)
    that changes ``task_keys`` of the task's row and ``agent_keys`` of the agent's, and
    writes ``attempt_keys`` of the attempt's; the keys in ``task_arrays`` and
    ``attempt_arrays`` come as one value per candidate. ``numbered``: the tasks are
    sessions', whose events take their session's next numbers. Its rows: ``agent`` (1
    when the agent's row was at the expected version), ``leased`` (the position of the
    candidate leased, from 1) and ``logged`` (its events inserted: all of them when a
    candidate was free and everything was written, else none), beside each of that
    task's finished dependencies (``l_dependencies`` of ``l_dependency_of`` that
    candidate, in state ``l_finished``), or beside NULLs when it has none."""
    agent_ok = (
        sa.select(agents.c.id)
        .where(
            agents.c.id == sa.bindparam("l_was_agent_id", type_=sa.Uuid),
            agents.c.version == sa.bindparam("l_was_agent_version", type_=sa.Integer),
        )
        .with_for_update()
        .cte("agent_ok")
    )
    candidate = (
        sa.func.unnest(
            sa.bindparam("l_was_task_ids", type_=ARRAY(sa.Uuid)),
            sa.bindparam("l_was_task_versions", type_=ARRAY(sa.Integer)),
        )
        .table_valued("id", "version", with_ordinality="n")
        .render_derived(name="candidate")
    )
    free = (
        sa.select(tasks.c.id, candidate.c.n)
        .select_from(tasks.join(candidate, tasks.c.id == candidate.c.id))
        .where(
            tasks.c.version == candidate.c.version,
            tasks.c.status == sa.bindparam("l_was_task_status", type_=sa.String),
            sa.exists(sa.select(agent_ok.c.id)),
        )
        .order_by(candidate.c.n)
        .limit(1)
        .with_for_update(skip_locked=True, of=tasks)
        .cte("free")
    )
    leased = (
        sa.update(tasks)
        .where(tasks.c.id == free.c.id)
        .values(
            {
                tasks.c[key]: _value(TASK + key, tasks.c[key].type, key in task_arrays, free.c.n)
                for key in task_keys
            }
        )
        .returning(tasks.c.id, free.c.n)
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
                    _value(
                        ATTEMPT + key,
                        task_attempts.c[key].type,
                        key in attempt_arrays,
                        leased.c.n,
                    )
                    for key in attempt_keys
                )
            )
            .select_from(leased)
            .where(sa.exists(sa.select(booked.c.id))),
        )
        .returning(task_attempts.c.task_id)
        .cte("opened")
    )
    counts = Grouping(sa.bindparam("l_counts", type_=ARRAY(sa.Integer)))
    session_ids = Grouping(sa.bindparam("l_session_ids", type_=ARRAY(sa.Uuid)))
    lock: sa.Label[Any] = sa.literal_column(writer_registration("seen.v")).label("registered")
    ordered: sa.Subquery
    if numbered:
        bumped = (
            sa.update(sessions)
            .where(
                sessions.c.id == session_ids[leased.c.n],
                sa.exists(sa.select(opened.c.task_id)),
            )
            .values(event_seq=sessions.c.event_seq + counts[leased.c.n])
            .returning(sessions.c.event_seq, leased.c.n)
            .cte("bumped")
        )
        # The last id given out is read once the session's row is held (a lateral
        # subquery of the bumped row), so readers are held back only from then on.
        seen = _last_given(bumped.c.event_seq.is_not(None))
        ordered = (
            sa.select(lock, bumped.c.event_seq.label("last"), bumped.c.n)
            .select_from(bumped.join(seen, sa.true()))
            .subquery("ordered")
        )
    else:  # tasks outside any session: their events have no numbers
        ordered = (
            sa.select(lock, sa.null().label("last"), leased.c.n)
            .select_from(leased.join(_last_given(sa.true()), sa.true()))
            .where(sa.exists(sa.select(opened.c.task_id)))
            .subquery("ordered")
        )
    # The events' rows: every candidate's, unnested in order, those of the candidate
    # leased numbered from the bumped counter, with the writer registered in the same
    # subquery, before the first row takes its id.
    new = (
        sa.func.unnest(
            sa.bindparam("l_event_of", type_=ARRAY(sa.Integer)),
            sa.bindparam("l_event_numbers", type_=ARRAY(sa.Integer)),
            sa.bindparam("l_types", type_=ARRAY(sa.Text)),
            sa.bindparam("l_ats", type_=ARRAY(sa.DateTime(timezone=True))),
            sa.bindparam("l_payloads", type_=ARRAY(sa.Text)),
        )
        .table_valued("of", "k", "type", "at", "payload", with_ordinality="i")
        .render_derived(name="new")
    )
    logged = (
        sa.insert(events)
        .from_select(
            ["session_id", "seq", "type", "at", "payload"],
            sa.select(
                session_ids[ordered.c.n],
                sa.cast(ordered.c["last"], sa.Integer) - counts[ordered.c.n] + new.c.k,
                new.c.type,
                new.c.at,
                sa.cast(new.c.payload, JSONB),
            )
            .select_from(ordered.join(new, new.c.of == ordered.c.n))
            .order_by(new.c.i),
        )
        .returning(events.c.id)
        .cte("logged")
    )
    outcome = sa.select(
        sa.select(sa.func.count()).select_from(agent_ok).scalar_subquery().label("agent"),
        sa.select(leased.c.n).scalar_subquery().label("leased"),
        sa.select(sa.func.count()).select_from(logged).scalar_subquery().label("logged"),
    ).subquery("outcome")
    # What the agent is told of the work before its task, in the same round trip.
    dependency = (
        sa.func.unnest(
            sa.bindparam("l_dependency_of", type_=ARRAY(sa.Integer)),
            sa.bindparam("l_dependencies", type_=ARRAY(sa.Uuid)),
        )
        .table_valued("of", "id")
        .render_derived(name="dependency")
    )
    finished = (
        sa.select(tasks, depends_on_column("postgresql"))
        .where(
            tasks.c.id.in_(
                sa.select(dependency.c.id).where(
                    dependency.c.of == sa.select(leased.c.n).scalar_subquery()
                )
            ),
            tasks.c.status == sa.any_(sa.bindparam("l_finished", type_=ARRAY(sa.Text))),
        )
        .subquery("finished")
    )
    return (
        sa.select(outcome, finished)
        .select_from(outcome.outerjoin(finished, sa.true()))
        .add_cte(booked, opened, logged)
    )


def _value(
    name: str, column_type: Any, per_candidate: bool, position: sa.ColumnElement[Any]
) -> sa.ColumnElement[Any]:
    """A written value: one for every candidate, or the one at the leased position."""
    if per_candidate:
        # In parentheses: PostgreSQL subscripts ``($1::integer[])[n]``, not ``$1::integer[][n]``.
        return Grouping(sa.bindparam(name, type_=ARRAY(column_type)))[position]
    return sa.bindparam(name, type_=column_type)


def _last_given(after: sa.ColumnElement[bool]) -> LateralFromClause:
    """The last event id given out (``seen.v``), read once ``after`` holds."""
    return sa.lateral(
        sa.select(sa.literal_column("v", sa.BigInteger))
        .select_from(sa.text(f"({LAST_GIVEN}) AS last_given"))
        .where(after),
        name="seen",
    )
