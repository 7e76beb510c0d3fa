"""Set tests on JSON arrays of strings (capability lists), in each dialect's own terms:
PostgreSQL's JSONB containment operators (index-friendly), SQLite's ``json_each``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB


def subset_of(column: Any, values: Sequence[str], dialect: str) -> Any:
    """Every element of the array in ``column`` is one of ``values``."""
    if dialect == "postgresql":
        return sa.type_coerce(column, JSONB).contained_by(sa.type_coerce(list(values), JSONB))
    elements = sa.func.json_each(column).table_valued("value")
    return ~sa.exists(
        sa.select(sa.literal(1)).select_from(elements).where(elements.c.value.not_in(values))
    )


def superset_of(column: Any, values: Sequence[str], dialect: str) -> Any:
    """The array in ``column`` holds every one of ``values``."""
    if not values:
        return sa.true()
    if dialect == "postgresql":
        return sa.type_coerce(column, JSONB).contains(sa.type_coerce(list(values), JSONB))
    elements = sa.func.json_each(column).table_valued("value")
    held = (
        sa.select(sa.func.count(sa.distinct(elements.c.value)))
        .select_from(elements)
        .where(elements.c.value.in_(values))
        .scalar_subquery()
    )
    return held == len(set(values))
