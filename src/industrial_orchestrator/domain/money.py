"""How an amount of US dollars is shown to a person: the one rule for the CLI, the
dashboard (a Jinja filter; its script has the same rule in one place, ``Orchestrator.usd``
in ``dashboard.js``) and the messages people read.

Costs add up as floats (per attempt, per session), so a total carries binary noise
(0.023167999999999998): shown as stored it reads as precision nobody has. Cents are what
people reason in; below a cent, a model call's real cost would vanish as $0.00, so it
keeps four decimals. The API keeps the number as it is.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
SMALLEST = Decimal("0.0001")
"""Four decimals: the finest amount shown; anything above zero below it is "<$0.0001"."""


def format_usd(amount: float) -> str:
    """``$1,234.57``, ``$0.02``, ``$0.0032``, ``<$0.0001``, ``$0.00``.

    Rounded half up on the float's exact value, as JavaScript's ``toFixed`` does, so the
    dashboard's script shows the same digits."""
    size = abs(Decimal(amount))
    sign = "-" if amount < 0 else ""
    if size == 0:
        return "$0.00"
    fine = size.quantize(SMALLEST, ROUND_HALF_UP)
    # Decided on the rounded value, so 0.00999 shows as $0.01, not $0.0100.
    if fine >= CENT:
        return f"{sign}${size.quantize(CENT, ROUND_HALF_UP):,}"
    if fine == 0:
        return f"<${SMALLEST}"
    return f"{sign}${fine}"
