"""Performance tiers (user guide §5) from an agent's finished tasks.

Boundaries, by success rate r = successes / finished:

- ELITE: r > 95 %
- ADVANCED: 85 % < r <= 95 %
- COMPETENT: 70 % < r <= 85 %
- TRAINEE: 50 % <= r <= 70 %
- DEGRADED: r < 50 %

So a boundary value belongs to the tier below it (exactly 95 % is ADVANCED, exactly 85 %
COMPETENT, exactly 70 % TRAINEE), except 50 %, which is still TRAINEE: "DEGRADED < 50 %"
is strict in the guide. The comparison is exact (integer arithmetic, no float rounding).
An agent with fewer than ``MIN_RECORD`` finished tasks is COMPETENT until it has a record.
"""

from __future__ import annotations

from enum import StrEnum

MIN_RECORD = 10


class Tier(StrEnum):
    ELITE = "ELITE"
    ADVANCED = "ADVANCED"
    COMPETENT = "COMPETENT"
    TRAINEE = "TRAINEE"
    DEGRADED = "DEGRADED"

    @property
    def rank(self) -> int:
        """0 for the best tier (ELITE) to 4 for DEGRADED: smaller is better."""
        return list(Tier).index(self)


def tier_for(successes: int, failures: int) -> Tier:
    if successes < 0 or failures < 0:
        raise ValueError("task counts cannot be negative")
    finished = successes + failures
    if finished < MIN_RECORD:
        return Tier.COMPETENT
    # r > 0.95  <=>  100 * successes > 95 * finished, and so on: exact, no float.
    if 100 * successes > 95 * finished:
        return Tier.ELITE
    if 100 * successes > 85 * finished:
        return Tier.ADVANCED
    if 100 * successes > 70 * finished:
        return Tier.COMPETENT
    if 100 * successes >= 50 * finished:
        return Tier.TRAINEE
    return Tier.DEGRADED
