"""The hot statements on PostgreSQL: compiled once by SQLAlchemy, run by asyncpg itself on
the unit of work's connection, inside its transaction.

Why: SQLAlchemy's execution path (a greenlet switch, an execution context, a cursor
result) costs more CPU than asyncpg's own round trip: 130 against 40 µs for a read by
primary key on this project's 2-core machine, and an agent task takes some fifty
statements. The statements stay SQLAlchemy constructs, with the same text, parameters
and type processing (a JSON value is serialised by its column type's bind processor,
exactly as SQLAlchemy would); only running them is direct. Errors are SQLAlchemy's own
(``IntegrityError``, ``OperationalError``, a dropped connection invalidated), so callers
and the unit of work cannot tell the difference.

SQLite, and a statement this cannot run as compiled (an expanding ``IN``, a column
default to compute in Python), go through SQLAlchemy as before.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

Row = Mapping[Any, Any]
"""A row by its keys: a dict when run directly, SQLAlchemy's RowMapping otherwise."""
_Processor = Callable[[Any], Any] | None
_KEPT = 1024
"""Plans kept (each holds its statement): the hot statements are built once, so a few
dozen are in use; the bound only guards against a caller that builds them per call."""
_STATUS_COUNT = re.compile(r"(?:INSERT \d+|UPDATE|DELETE|SELECT|MERGE) (\d+)")


@dataclass(slots=True)
class _Plan:
    statement: Executable
    """Held: plans are found by the statement's id, which stays its own while held."""
    sql: str
    names: tuple[str, ...]
    """The bound parameters, in the order of ``$1``, ``$2``, ..."""
    binds: tuple[_Processor, ...]
    defaults: dict[str, Any]
    """Values the statement carries itself (``bindparam("key", 7)``)."""
    entries: tuple[tuple[str, Any], ...]
    """What SQLAlchemy expects back: each column's key and type."""
    keys: tuple[str, ...] | None = None
    """The result's keys, once the server has described the statement's columns."""
    results: tuple[_Processor, ...] = ()

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, process in zip(self.names, self.binds, strict=True):
            value = params[name] if name in params else self.defaults[name]
            values.append(value if process is None or value is None else process(value))
        return values

    def rows(self, records: Sequence[Any]) -> list[Row]:
        keys = self.keys
        assert keys is not None
        if not any(self.results):
            return [dict(zip(keys, record, strict=True)) for record in records]
        return [
            {
                key: value if process is None or value is None else process(value)
                for key, value, process in zip(keys, record, self.results, strict=True)
            }
            for record in records
        ]

    async def describe(self, connection: Any, dialect: Dialect) -> None:
        """The result's keys and processors from the columns as the server types them (a
        processor may depend on the exact type: a float column's differs from a
        numeric's). Once per statement and process: one more round trip."""
        attributes = (await connection.prepare(self.sql)).get_attributes()
        if len(attributes) == len(self.entries):
            self.results = tuple(
                type_._cached_result_processor(dialect, attribute.type.oid)
                for (_, type_), attribute in zip(self.entries, attributes, strict=True)
            )
            self.keys = tuple(key for key, _ in self.entries)
        else:  # a text() statement that does not name its columns: the server's names
            self.results = tuple(None for _ in attributes)
            self.keys = tuple(attribute.name for attribute in attributes)


_plans: OrderedDict[tuple[int, tuple[str, ...], bool], tuple[Executable, _Plan | None]] = (
    OrderedDict()
)


def _plan(
    statement: Executable, dialect: Dialect, keys: tuple[str, ...], many: bool
) -> _Plan | None:
    found = _plans.get((id(statement), keys, many))
    if found is not None and found[0] is statement:
        return found[1]
    plan = _compiled(statement, dialect, keys, many)
    _plans[(id(statement), keys, many)] = (statement, plan)
    if len(_plans) > _KEPT:
        _plans.popitem(last=False)
    return plan


def _compiled(
    statement: Executable, dialect: Dialect, keys: tuple[str, ...], many: bool
) -> _Plan | None:
    # The column keys make an INSERT's or UPDATE's SET clause the parameters' own
    # columns, as SQLAlchemy compiles an execution with those parameters.
    built: Any = statement
    compiled: Any = built.compile(dialect=dialect, column_keys=list(keys), for_executemany=many)
    if (
        compiled.positiontup is None
        or compiled.post_compile_params
        or compiled.literal_execute_params
        or compiled.escaped_bind_names
        or compiled.insert_prefetch
        or compiled.update_prefetch
    ):
        return None
    names = tuple(compiled.positiontup)
    defaults = {
        name: bind.effective_value
        for name, bind in compiled.binds.items()
        if not bind.required and bind.callable is None
    }
    if any(name not in defaults and name not in keys for name in names):
        return None  # a value SQLAlchemy would compute or refuse: leave it to SQLAlchemy
    processors = compiled._bind_processors
    return _Plan(
        statement=statement,
        sql=compiled.string,
        names=names,
        binds=tuple(processors.get(name) for name in names),
        defaults=defaults,
        entries=tuple((entry.keyname, entry.type) for entry in compiled._result_columns),
    )


async def fetch_all(
    db: AsyncConnection, statement: Executable, params: Mapping[str, Any] | None = None
) -> list[Row]:
    """Every row ``statement`` returns, as mappings of its keys."""
    given = params or {}
    plan = _direct(db, statement, given, many=False)
    if plan is None:
        return list((await db.execute(statement, dict(given))).mappings())
    records = await _call(db, plan, "fetch", plan.arguments(given))
    return plan.rows(records)


async def fetch_first(
    db: AsyncConnection, statement: Executable, params: Mapping[str, Any] | None = None
) -> Row | None:
    rows = await fetch_all(db, statement, params)
    return rows[0] if rows else None


async def fetch_value(
    db: AsyncConnection, statement: Executable, params: Mapping[str, Any] | None = None
) -> Any:
    """The first column of the first row, or None when there is no row."""
    row = await fetch_first(db, statement, params)
    return None if row is None else next(iter(row.values()))


async def run(
    db: AsyncConnection, statement: Executable, params: Mapping[str, Any] | None = None
) -> int:
    """Run a statement that returns no rows; how many rows it changed."""
    given = params or {}
    plan = _direct(db, statement, given, many=False)
    if plan is None:
        result: Any = await db.execute(statement, dict(given))
        return int(result.rowcount)
    status = await _call(db, plan, "execute", plan.arguments(given))
    counted = _STATUS_COUNT.match(status or "")
    return int(counted.group(1)) if counted else -1


async def run_many(
    db: AsyncConnection, statement: Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run a statement that returns no rows once per parameter set, in one go."""
    if not rows:
        return
    plan = _direct(db, statement, rows[0], many=len(rows) > 1)
    if plan is None or any(row.keys() != rows[0].keys() for row in rows):
        await db.execute(statement, [dict(row) for row in rows])
        return
    await _call(db, plan, "executemany", [plan.arguments(row) for row in rows], many=True)


async def fetch_composed(
    db: AsyncConnection,
    parts: Sequence[tuple[Executable, Mapping[str, Any]]],
    compose: Callable[[list[str]], tuple[str, tuple[str, ...]]],
) -> Row | None:
    """PostgreSQL: one statement made of ``parts``, each compiled as it would run alone
    (the same text and parameter processing), its row as a mapping of its keys.
    ``compose`` is given each part's SQL, its placeholders renumbered to follow the
    parts before it, and returns the statement's text and the keys of its one row. The
    text is composed once per ``compose`` (a function of the module's, not a fresh
    closure) and combination of compiled parts; None when a part cannot run directly
    (SQLAlchemy computes a value of it)."""
    plans: list[_Plan] = []
    for statement, params in parts:
        plan = _direct(db, statement, params, many=False)
        if plan is None:
            return None
        plans.append(plan)
    key = (id(compose), *(id(plan) for plan in plans))
    found = _composed.get(key)
    if found is None or any(a is not b for a, b in zip(found[0], plans, strict=True)):
        texts, offset = [], 0
        for plan in plans:
            texts.append(_renumbered(plan.sql, offset))
            offset += len(plan.names)
        sql, keys = compose(texts)
        whole = _Plan(
            statement=plans[0].statement,
            sql=sql,
            names=(),
            binds=(),
            defaults={},
            entries=(),
            keys=keys,
            results=tuple(None for _ in keys),
        )
        if len(_composed) >= _KEPT:
            _composed.clear()
        found = _composed[key] = (tuple(plans), whole)
    arguments = [
        value
        for plan, (_, params) in zip(plans, parts, strict=True)
        for value in plan.arguments(params)
    ]
    rows = found[1].rows(await _call(db, found[1], "fetch", arguments))
    return rows[0] if rows else None


_PLACEHOLDER = re.compile(r"\$(\d+)")


def _renumbered(sql: str, offset: int) -> str:
    """``sql`` with its placeholders ``$n`` moved on by ``offset`` (compiled text: a
    ``$`` is never in a literal of it)."""
    return _PLACEHOLDER.sub(lambda found: f"${int(found[1]) + offset}", sql)


_composed: dict[tuple[int, ...], tuple[tuple[_Plan, ...], _Plan]] = {}


def _direct(
    db: AsyncConnection, statement: Executable, params: Mapping[str, Any], *, many: bool
) -> _Plan | None:
    if db.dialect.name != "postgresql":
        return None
    return _plan(statement, db.dialect, tuple(sorted(params)), many)


async def _call(
    db: AsyncConnection, plan: _Plan, method: str, arguments: list[Any], *, many: bool = False
) -> Any:
    # SQLAlchemy's adapter of the asyncpg connection: it begins the transaction lazily,
    # before the first statement, and commits or rolls it back for the unit of work.
    synchronous: Any = db.sync_connection
    adapted: Any = synchronous.connection.dbapi_connection
    try:
        async with adapted._execute_mutex:
            if adapted._transaction is None:
                await adapted._start_transaction()  # nothing under AUTOCOMMIT
            connection = adapted._connection
            if plan.keys is None and method == "fetch":
                await plan.describe(connection, db.dialect)
            if many:
                return await connection.executemany(plan.sql, arguments)
            return await getattr(connection, method)(plan.sql, *arguments)
    except Exception as error:
        raise await _translated(db, adapted, plan, arguments, error) from error


async def _translated(
    db: AsyncConnection, adapted: Any, plan: _Plan, arguments: list[Any], error: Exception
) -> BaseException:
    """The error as SQLAlchemy raises it for the same failure, and a connection the
    failure closed invalidated as SQLAlchemy does."""
    dbapi_error: Exception = error
    if not isinstance(error, adapted.dbapi.Error):
        try:
            adapted._handle_exception(error)
        except adapted.dbapi.Error as translated:
            dbapi_error = translated
        except Exception:
            return error  # not the database's: as it is
    dialect: Any = db.dialect
    closed = bool(adapted._connection.is_closed()) or dialect.is_disconnect(
        dbapi_error, adapted, None
    )
    if closed and not db.invalidated:
        # As SQLAlchemy does on a disconnect: every connection of the pool made before
        # now is replaced at its next checkout (the server restarted: they are all dead),
        # and this one at once.
        synchronous: Any = db.sync_connection
        synchronous.engine.pool._invalidate(synchronous.connection, dbapi_error, _checkin=False)
        await db.invalidate(dbapi_error)
    return sa_exc.DBAPIError.instance(
        plan.sql,
        arguments,
        dbapi_error,
        adapted.dbapi.Error,
        connection_invalidated=closed,
        dialect=db.dialect,
    )
