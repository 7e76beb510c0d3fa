"""When the engine ends a session on its own, and in which state: it ran out of time, it
went over its budget, or its plan is stuck (a task failed for good and nothing can move).

The operator's verbs end sessions too; these are the endings nobody asked for, so each
carries the reason the operator reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from .options import SessionOptions, budget_exceeded
from .progress import Progress
from .states import SessionState

MAX_GIVE_UP_CHARS = 1000
"""How much of the first failure's own words a stuck plan's reason quotes."""


@dataclass(frozen=True, slots=True)
class Ending:
    state: SessionState
    reason: str


@dataclass(frozen=True, slots=True)
class SessionLimits:
    default_timeout_seconds: int
    """For sessions whose options set no ``timeout_seconds`` of their own."""

    def timeout_of(self, options: SessionOptions) -> int:
        return options.timeout_seconds or self.default_timeout_seconds

    def within_time(self, options: SessionOptions, ran_at_most: float | None) -> bool:
        """Whether a session that ran at most ``ran_at_most`` seconds (None: unknown) is
        surely within its time limit, so that its exact running time need not be read."""
        return ran_at_most is not None and ran_at_most <= self.timeout_of(options)

    def ending(
        self,
        status: SessionState,
        options: SessionOptions,
        *,
        ran_seconds: float,
        tokens_used: int,
        cost_usd: float,
    ) -> Ending | None:
        """How a session that ran ``ran_seconds`` (time spent running; pauses do not
        count) and spent this much ends now, or None while it is within its limits. Time
        is looked at before the budget."""
        timeout = self.timeout_of(options)
        if ran_seconds > timeout:
            if status == SessionState.DEGRADED:
                # The guide's table has no DEGRADED -> TIMEOUT; it must end all the same.
                return Ending(
                    SessionState.FAILED,
                    f"timed out while DEGRADED: ran longer than {timeout} s",
                )
            return Ending(SessionState.TIMEOUT, f"ran longer than {timeout} s")
        reason = budget_exceeded(options, tokens_used, cost_usd)
        return None if reason is None else Ending(SessionState.FAILED, reason)


def stuck_ending(progress: Progress) -> Ending:
    """How a session whose plan is stuck ends: PARTIALLY_COMPLETED when some task got
    done, FAILED when none did."""
    # The first failure's own words (e.g. the provider's error and the setting to fix)
    # say more to the operator than the list of what failed.
    why = next((t.result_summary for t in progress.failed if t.result_summary), None)
    names = ", ".join(f"'{t.title}' ({t.status.value})" for t in progress.failed[:5])
    if progress.finished:
        state = SessionState.PARTIALLY_COMPLETED
        reason = f"{len(progress.finished)} task(s) done; cannot go on: {names} failed"
    else:
        state = SessionState.FAILED
        reason = f"no task could be done: {names} failed"
    if why:
        reason += f"; {why[:MAX_GIVE_UP_CHARS]}"
    return Ending(state, reason)
