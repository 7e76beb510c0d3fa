"""Constants written into a statement's text rather than bound as parameters.

Why: the orchestrator's PostgreSQL connections plan each prepared statement once, for
any parameters (``plan_cache_mode = force_generic_plan``: ``storage.database``), and a
plan made without the values sees neither a partial index (``status = 'READY'``) nor
how rare a state is: ``status = $1`` is planned as if every state were as common, a
scan of every session where an index gives the few QUEUED ones. So the states a
statement filters on are written into its text. An expanding ``IN`` of bound values is
also rendered again on every run and cannot run directly (``direct_execution``). Only
plain names go in this way (an enum's value: letters, digits, dots, underscores), never
text from outside.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa


def constant(value: str) -> Any:
    """``value`` as a quoted SQL literal; ValueError for anything but a plain name."""
    if not value.replace(".", "").replace("_", "").isalnum():
        raise ValueError(f"not a plain constant: {value!r}")
    return sa.literal_column(f"'{value}'")


def constants(values: Iterable[str]) -> list[Any]:
    """Each of ``values`` as ``constant`` does, for an ``IN``."""
    return [constant(value) for value in values]
