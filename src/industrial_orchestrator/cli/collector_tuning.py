"""The garbage collector of a serving process, tuned once its app is built.

Why: CPython's cyclic collector walks every object it tracks on each full collection,
and a built app holds some 200,000 that live as long as the process (modules, classes,
SQLAlchemy's and pydantic's structures). Measured under ``bench/engine_sessions.py`` (200
sessions, two processes), collections took about 8 % of a serving process's CPU, and each
full one about 90 ms with the event loop stopped. Freezing what exists after start-up
takes those objects out of every later collection (they are still freed by reference
counting if they die); the larger young generation lets most of a request's short-lived
objects die by reference counting before a collection looks at them.

Only ``serve`` does this, in each of its processes (the headless runtime's too): the test
suite builds many apps in one process, and freezing one would keep what it leaves in a
cycle for the rest of the run.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations (less deallocations) of tracked objects between young collections
(CPython's default: 700)."""
OLDER_THRESHOLDS = (20, 100)
"""Young collections per middle one, middle ones per full one (default 10 and 10)."""


def tune_collector() -> None:
    """Collect what start-up left behind, freeze the rest, then collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
