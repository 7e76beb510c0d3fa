"""How hard the fault suites push: ``CHAOS_SCALE`` (default 1, what ``make test`` runs)
multiplies their kills, sessions and outage times; ``make chaos`` runs them at 4."""

from __future__ import annotations

import os


def _scale() -> int:
    raw = os.environ.get("CHAOS_SCALE", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise RuntimeError(f"CHAOS_SCALE must be a whole number from 1 up, not {raw!r}")
    return int(raw)


SCALE = _scale()
