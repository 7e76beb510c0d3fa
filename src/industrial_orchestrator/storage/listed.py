"""A column's value among a list given at run time, as the hot statements take it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY


def one_of(column: Any, name: str, element: Any, dialect: str) -> Any:
    """``column`` is one of the values of the parameter ``name`` (a list of ``element``).

    PostgreSQL: one array (``= ANY(:name)``), so that the statement's text does not depend
    on how many values there are: compiled once, and run directly
    (``direct_execution``). Elsewhere an expanding ``IN``, rendered on every run."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=ARRAY(element)))
    return column.in_(sa.bindparam(name, expanding=True))
