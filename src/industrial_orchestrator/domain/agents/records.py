"""Learned routing: how well each agent has done each task type, and whom that favours.

**The record** of one (agent, task type) is computed from the agent's most recent finished
attempts at tasks of that type: at most ``WINDOW`` of them, none older than
``HORIZON``. That sliding window is the recency weighting, kept plain on purpose: the
figures an operator reads are counts of real attempts they can check, and an agent that
got better (a new model) or worse shows it within ``WINDOW`` attempts.

- *Finished* means COMPLETED, FAILED or EXPIRED (a lease that ran out is work taken and
  not delivered, as for tiers). RELEASED attempts are not counted: most were taken out of
  the agent's hands (an operator cancelled, the session paused) and the row cannot tell.
- ``success_rate`` = completed / attempts.
- ``median_duration_ms``: over the completed attempts, the execution time the agent
  reported, else lease to result; None before the first success.
- ``mean_cost_usd``: over every counted attempt (a failure's spend is spent too).

A record **counts** once it has ``MIN_SAMPLES`` attempts; a shorter one is shown, never
used.

**Ranking** (``learned_keys``), inside the pool the tier rules leave (capability, status
and capacity filters, DEGRADED tier only as a last resort, agents suited to the task
type): a counted record ranks by success rate in bands of ``1 / RATE_BANDS`` (best
first; rates in one band are as good as equal: a few attempts cannot tell 81 % from
83 %), then lower mean cost, then shorter median duration. An agent without a counted
record is ranked as the pool's average counted record: behind agents that do better, ahead
of those that do worse, so new agents still get work. When no agent of the pool has a
counted record the keys are empty and tier, load and the rest decide, as before.

**Pulls** (``tasks_to_leave``): an agent asking for work leaves a task to a rival when its
own counted record for the task's type is clearly worse (``CLEAR_MARGIN`` below the
rival's counted one) and the rival could take it right now: it holds the capabilities,
is idle (no task in progress), alive (beat recently) and not in a worse tier bracket
(DEGRADED only if the claimer is too). A task waits so only ``MAX_WAIT`` after it became
READY; then anyone capable takes it, so nothing starves.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from math import floor, inf
from uuid import UUID

from ..money import format_usd
from ..tasks.task import Task, TaskType
from .agent import Agent, AgentStatus
from .tiers import Tier

WINDOW = 50
"""The most recent finished attempts per (agent, task type) that make its record."""
HORIZON = timedelta(days=30)
"""Attempts finished longer ago than this are forgotten."""
MIN_SAMPLES = 3
"""Attempts a record needs before routing uses it."""
RATE_BANDS = 20
"""Success rates are compared in bands of 5 points."""
CLEAR_MARGIN = Fraction(1, 4)
"""How much lower a claimer's success rate must be before it leaves a task to a rival."""
MAX_WAIT = timedelta(seconds=30)
"""How long a READY task may wait for a better agent than the one asking for it."""

RecordKey = tuple[UUID, TaskType]


@dataclass(frozen=True, slots=True)
class FinishedAttempt:
    """One finished attempt, as much of it as records need."""

    agent_id: UUID
    task_type: TaskType
    succeeded: bool
    duration_ms: int | None
    cost_usd: float


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """How one agent has done one task type (see the module docstring)."""

    agent_id: UUID
    task_type: TaskType
    attempts: int
    successes: int
    median_duration_ms: int | None
    mean_cost_usd: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts

    @property
    def exact_rate(self) -> Fraction:
        return Fraction(self.successes, self.attempts)

    @property
    def counts(self) -> bool:
        """Whether the record is long enough for routing to use."""
        return self.attempts >= MIN_SAMPLES

    def describe(self) -> str:
        text = f"{self.task_type.value} record {self.successes}/{self.attempts} succeeded"
        if not self.counts:
            return f"{text} (too short to count)"
        if self.median_duration_ms is not None:
            text += f", median {self.median_duration_ms} ms"
        return f"{text}, mean {format_usd(self.mean_cost_usd)}"


def summarise(attempts: Iterable[FinishedAttempt]) -> dict[RecordKey, AgentRecord]:
    """The records the attempts make, by (agent id, task type). The caller passes the
    window (the most recent ``WINDOW`` within ``HORIZON``); every attempt given counts."""
    grouped: dict[RecordKey, list[FinishedAttempt]] = defaultdict(list)
    for attempt in attempts:
        grouped[(attempt.agent_id, attempt.task_type)].append(attempt)
    records: dict[RecordKey, AgentRecord] = {}
    for (agent_id, task_type), group in grouped.items():
        durations = [a.duration_ms for a in group if a.succeeded and a.duration_ms is not None]
        records[(agent_id, task_type)] = AgentRecord(
            agent_id=agent_id,
            task_type=task_type,
            attempts=len(group),
            successes=sum(1 for a in group if a.succeeded),
            median_duration_ms=round(statistics.median(durations)) if durations else None,
            mean_cost_usd=sum(a.cost_usd for a in group) / len(group),
        )
    return records


def duration_ms(
    execution_time_ms: int | None, leased_at: datetime, finished_at: datetime | None
) -> int | None:
    """How long an attempt took: what the agent reported, else lease to result."""
    if execution_time_ms is not None:
        return max(0, execution_time_ms)
    if finished_at is None:
        return None
    return max(0, round((finished_at - leased_at).total_seconds() * 1000))


def rate_band(rate: Fraction) -> int:
    return floor(rate * RATE_BANDS)


def learned_keys(
    pool: Sequence[Agent], records: Mapping[UUID, AgentRecord]
) -> dict[UUID, tuple[float, ...]]:
    """Each pooled agent's ranking key from its record for the task type (smaller is
    better), or an empty mapping when no pooled agent has a record that counts."""
    counted = [r for a in pool if (r := records.get(a.id)) is not None and r.counts]
    if not counted:
        return {}
    average_rate = sum((r.exact_rate for r in counted), Fraction(0)) / len(counted)
    average_cost = sum(r.mean_cost_usd for r in counted) / len(counted)
    known = [r.median_duration_ms for r in counted if r.median_duration_ms is not None]
    average_duration = sum(known) / len(known) if known else inf
    keys: dict[UUID, tuple[float, ...]] = {}
    for agent in pool:
        record = records.get(agent.id)
        if record is not None and record.counts:
            keys[agent.id] = (
                -rate_band(record.exact_rate),
                record.mean_cost_usd,
                inf if record.median_duration_ms is None else record.median_duration_ms,
            )
        else:
            keys[agent.id] = (-rate_band(average_rate), average_cost, average_duration)
    return keys


def may_leave(record: AgentRecord | None) -> bool:
    """Whether an agent with this record could be clearly worse than someone (a cheap
    check before looking for rivals)."""
    return record is not None and record.counts and record.exact_rate <= 1 - CLEAR_MARGIN


def clearly_better(rival: AgentRecord | None, mine: AgentRecord | None) -> bool:
    return (
        may_leave(mine)
        and rival is not None
        and rival.counts
        and mine is not None
        and rival.exact_rate >= mine.exact_rate + CLEAR_MARGIN
    )


def can_take_now(rival: Agent, claimer: Agent, task: Task, *, alive_since: datetime) -> bool:
    """Whether ``rival`` could take ``task`` instead of ``claimer`` right away."""
    return (
        rival.id != claimer.id
        and rival.status in (AgentStatus.HEALTHY, AgentStatus.DEGRADED)
        and rival.tasks_in_progress == 0
        and rival.last_heartbeat is not None
        and rival.last_heartbeat >= alive_since
        and (rival.tier != Tier.DEGRADED or claimer.tier == Tier.DEGRADED)
        and set(task.required_capabilities) <= set(rival.capabilities)
    )


def tasks_to_leave(
    claimer: Agent,
    waiting: Sequence[Task],
    rivals: Sequence[Agent],
    records: Mapping[RecordKey, AgentRecord],
    *,
    now: datetime,
    alive_since: datetime,
) -> set[UUID]:
    """The waiting tasks ``claimer`` should leave to a clearly better idle rival (see
    the module docstring)."""
    leave: set[UUID] = set()
    for task in waiting:
        mine = records.get((claimer.id, task.task_type))
        if not may_leave(mine) or now - task.updated_at >= MAX_WAIT:
            continue
        if any(
            can_take_now(rival, claimer, task, alive_since=alive_since)
            and clearly_better(records.get((rival.id, task.task_type)), mine)
            for rival in rivals
        ):
            leave.add(task.id)
    return leave
