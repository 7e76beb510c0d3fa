"""Constants written into a statement's text rather than bound as parameters.

Why: PostgreSQL can keep one generic plan for a prepared statement only when the values
that shape the plan are in its text. A partial index (``status = 'READY'``) is usable
only for a literal; an expanding ``IN`` of bound values is rendered again on every run
and cannot run directly (``direct_execution``). Only plain names go in this way (an
enum's value: letters, digits, dots, underscores), never text from outside.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def constant(value: str) -> Any:
    """``value`` as a quoted SQL literal; ValueError for anything but a plain name."""
    if not value.replace(".", "").replace("_", "").isalnum():
        raise ValueError(f"not a plain constant: {value!r}")
    return sa.literal_column(f"'{value}'")
