"""Repair text older versions stored but no reader can serve (NUL, lone surrogates).

Before the API refused them (``domain.storable_text``), SQLite took both: a JSON column
kept ``\\ud800`` or ``\\u0000`` as escapes that decode to a lone surrogate or a NUL (a
lone surrogate then broke every read of the row, e.g. every ``GET /sessions``), and a
TEXT column could hold a raw NUL. Every such code point becomes U+FFFD.

On PostgreSQL nothing is to repair, so nothing is read: ``text`` refuses a NUL and, being
UTF-8, cannot hold a surrogate, and every JSON column is ``jsonb``, which refuses both
escapes (``tests/storage/test_storable_text_migration.py`` checks that the schema has
no plain ``json`` column, which would keep them).

Only rows that may hold one are read: a TEXT value with a zero byte, a JSON text with a
``\\u0000`` or ``\\ud...`` escape (valid surrogate pairs match too and are left as they
are), in batches by rowid, so a large table costs one scan and no memory.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from industrial_orchestrator.domain.storable_text import storable, storable_json

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    inspector = sa.inspect(bind)
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        texts: list[str] = []
        jsons: list[str] = []
        for column in inspector.get_columns(table):
            kind = column["type"]
            if isinstance(kind, sa.JSON):
                jsons.append(column["name"])
            elif isinstance(kind, sa.String):
                texts.append(column["name"])
        if texts or jsons:
            _repair(bind, table, texts, jsons)


def downgrade() -> None:
    """Nothing to undo: the replaced code points were never readable."""


def _repair(bind: Connection, table: str, texts: list[str], jsons: list[str]) -> None:
    quote = bind.dialect.identifier_preparer.quote
    suspects = [f"instr(CAST({quote(c)} AS BLOB), X'00') > 0" for c in texts] + [
        # LIKE ignores ASCII case, so \uD800 (another writer's spelling) matches too.
        f"({quote(c)} LIKE '%\\u0000%' OR {quote(c)} LIKE '%\\ud%')"
        for c in jsons
    ]
    columns = ", ".join(quote(c) for c in [*texts, *jsons])
    select = sa.text(
        f"SELECT rowid AS row_id, {columns} FROM {quote(table)} "
        f"WHERE rowid > :after AND ({' OR '.join(suspects)}) ORDER BY rowid LIMIT {_BATCH}"
    )
    after = -(2**63)
    while True:
        rows = bind.execute(select, {"after": after}).all()
        for row in rows:
            changes = _changes(dict(row._mapping), texts, jsons)
            if changes:
                _update(bind, table, row.row_id, changes, texts)
        if len(rows) < _BATCH:
            return
        after = rows[-1].row_id


def _changes(row: dict[str, Any], texts: list[str], jsons: list[str]) -> dict[str, str]:
    changes: dict[str, str] = {}
    for name in texts:
        value = row[name]
        if isinstance(value, str) and storable(value) != value:
            changes[name] = storable(value)
    for name in jsons:
        value = row[name]
        if not isinstance(value, str):
            continue
        try:
            decoded = json.loads(value)
        except ValueError:
            continue  # not JSON at all: not this migration's business
        cleaned = storable_json(decoded)
        if cleaned is not decoded:
            changes[name] = json.dumps(cleaned)
    return changes


def _update(
    bind: Connection, table: str, rowid: int, changes: dict[str, str], texts: list[str]
) -> None:
    quote = bind.dialect.identifier_preparer.quote
    names = list(changes)
    sets = ", ".join(f"{quote(name)} = :v{i}" for i, name in enumerate(names))
    statement = sa.text(f"UPDATE {quote(table)} SET {sets} WHERE rowid = :rowid")
    values = {f"v{i}": changes[name] for i, name in enumerate(names)}
    try:
        with bind.begin_nested():
            bind.execute(statement, {**values, "rowid": rowid})
    except sa.exc.IntegrityError:
        # A unique name now equal to another row's ("a\0" and "a\ufffd"): the row's
        # number keeps them apart rather than failing the whole upgrade.
        apart = {
            f"v{i}": f"{changes[name]}~{rowid}" if name in texts else changes[name]
            for i, name in enumerate(names)
        }
        bind.execute(statement, {**apart, "rowid": rowid})
