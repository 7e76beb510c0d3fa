"""Capability-based routing (user guide §4 "Agents & Routing", §5 "Agent Performance Tiers"):
pick the agent a task goes to, deterministically, and say why.

Rules, in order:

1. **Hard filters.** A candidate holds *every* required capability (compared normalised:
   stripped, lower-case), is HEALTHY or DEGRADED (not BUSY, not OFFLINE), is not at capacity
   and is not in ``exclude``. No required capability means every agent holds them all.
2. **Last resort.** Agents in the DEGRADED *tier* ("tasks rerouted") are considered only when
   no candidate of another tier qualifies.
3. **Task type preference.** When ``task_type`` maps to an agent type (design -> architect,
   code_generation -> implementer, ...) and some candidates are of that type, only they are
   ranked; otherwise every candidate is (``type_matched`` says which happened).
4. **Ranking**, smallest key first:
   best tier (``Tier.rank``), lowest ``current_load``, best success rate, least recently
   assigned (never assigned first), name, id. A success rate of ``None`` (no finished task
   yet) ranks *after* every known rate: a record, even a short one, beats none. The tier
   already keeps short records (< ``MIN_RECORD``) at COMPETENT, so this only breaks ties.
5. **Learned routing.** Given ``records`` (each agent's record for the task's type), the
   pool is ranked by record first (``agent_records.learned_keys``: success rate, then
   cost, then duration; agents without a record that counts as the pool's average), and
   by the keys of rule 4 after that. Rules 1-3 stay the floor: a record never brings in
   an agent they leave out. With no record that counts, rule 4 alone decides.

``considered`` counts the pool that was ranked (after rules 2 and 3); ``qualified`` counts
every candidate passing rule 1. Runners-up come from the ranked pool only, in rank order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ..errors import Conflict, InvalidInput
from ..tasks.task import TaskType, normalise_capabilities
from .agent import Agent, AgentStatus
from .records import AgentRecord, learned_keys
from .tiers import Tier

# The agent type suited to each task type; task types not listed prefer none.
SUITED_AGENT_TYPES: dict[TaskType, str] = {
    TaskType.DESIGN: "architect",
    TaskType.CODE_GENERATION: "implementer",
    TaskType.TESTING: "tester",
    TaskType.REVIEW: "reviewer",
    TaskType.SECURITY_AUDIT: "security_auditor",
    TaskType.DOCUMENTATION: "documenter",
}

ROUTABLE_STATUSES = frozenset({AgentStatus.HEALTHY, AgentStatus.DEGRADED})

# Why a holder of the capabilities was not a candidate; an agent is counted once, under the
# first reason in this order that applies.
EXCLUSION_REASONS = ("excluded_by_request", "offline", "busy", "at_capacity")


class NoAgentAvailable(Conflict):
    """No agent qualifies for the task; the details say why."""

    code = "no_agent_available"


@dataclass(frozen=True, slots=True)
class ScoreBreakdown:
    """The ranking keys of one candidate, and a sentence an operator can read."""

    tier: Tier
    tier_rank: int
    load: float
    success_rate: float | None
    last_assigned_at: datetime | None
    type_matched: bool
    reason: str
    record: AgentRecord | None = None
    """The agent's record for the task type, if it has one (counted or not)."""
    learned: bool = False
    """True when records for the task type ranked the pool (rule 5)."""


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    chosen: Agent
    score: ScoreBreakdown
    runners_up: list[tuple[Agent, ScoreBreakdown]]
    considered: int
    """How many candidates were ranked (after the DEGRADED-tier and task-type preferences)."""
    qualified: int
    """How many agents passed the hard filters (capabilities, status, capacity, exclude)."""

    @property
    def type_matched(self) -> bool:
        """True when the ranked pool was narrowed to agents suited to the task type."""
        return self.score.type_matched


def suited_agent_type(task_type: TaskType | None) -> str | None:
    return SUITED_AGENT_TYPES.get(task_type) if task_type is not None else None


def rank_key(agent: Agent) -> tuple[Any, ...]:
    """The deterministic ordering of candidates: smaller is better."""
    rate = agent.success_rate
    # A known rate first (best first), then no record.
    rate_key = (0, -rate) if rate is not None else (1, 0.0)
    assigned = agent.last_assigned_at
    # Never assigned first, then the oldest assignment.
    assigned_key = (0, 0.0) if assigned is None else (1, assigned.timestamp())
    return (
        agent.tier.rank,
        agent.current_load,
        rate_key,
        assigned_key,
        agent.name,
        str(agent.id),
    )


def route(
    agents: Sequence[Agent],
    *,
    required_capabilities: Iterable[str],
    task_type: TaskType | None = None,
    exclude: Collection[UUID] = (),
    runners_up: int = 3,
    records: Mapping[UUID, AgentRecord] | None = None,
) -> RoutingDecision:
    """Choose the agent for a task. ``records`` are the agents' records for the task's
    type, by agent id (rule 5). Raises ``NoAgentAvailable`` when none qualifies and
    ``InvalidInput`` for a blank capability name or a negative ``runners_up``."""
    if runners_up < 0:
        raise InvalidInput(
            "runners_up cannot be negative", {"field": "runners_up", "value": runners_up}
        )
    required = normalise_capabilities(required_capabilities)
    excluded_ids = frozenset(exclude)

    holders = [a for a in agents if set(required) <= set(a.capabilities)]
    qualified = [a for a in holders if _exclusion_reason(a, excluded_ids) is None]
    if not qualified:
        raise _no_agent(agents, holders, required, excluded_ids)

    pool = [a for a in qualified if a.tier != Tier.DEGRADED] or qualified
    wanted_type = suited_agent_type(task_type)
    matching = [a for a in pool if wanted_type is not None and a.agent_type == wanted_type]
    type_matched = bool(matching)
    if type_matched:
        pool = matching

    known = records or {}
    learned = learned_keys(pool, known)
    ranked = sorted(pool, key=lambda a: (learned.get(a.id, ()), rank_key(a)))
    scores = [
        _score(a, type_matched, task_type, known.get(a.id), learned=bool(learned)) for a in ranked
    ]
    return RoutingDecision(
        chosen=ranked[0],
        score=scores[0],
        runners_up=list(zip(ranked[1 : 1 + runners_up], scores[1 : 1 + runners_up], strict=True)),
        considered=len(ranked),
        qualified=len(qualified),
    )


def _exclusion_reason(agent: Agent, excluded_ids: frozenset[UUID]) -> str | None:
    if agent.id in excluded_ids:
        return "excluded_by_request"
    if agent.status not in ROUTABLE_STATUSES:
        return agent.status.value  # "offline" or "busy"
    if agent.at_capacity:
        return "at_capacity"
    return None


def _score(
    agent: Agent,
    type_matched: bool,
    task_type: TaskType | None,
    record: AgentRecord | None,
    *,
    learned: bool,
) -> ScoreBreakdown:
    rate = agent.success_rate
    parts = []
    if record is not None:
        parts.append(record.describe())
    if learned and (record is None or not record.counts) and task_type is not None:
        parts.append(f"ranked as the average {task_type.value} record")
    parts += [
        f"tier {agent.tier.value}",
        f"load {agent.current_load:.2f}",
        f"success rate {rate:.0%}" if rate is not None else "no record yet",
        (
            f"last assigned {agent.last_assigned_at.isoformat()}"
            if agent.last_assigned_at is not None
            else "never assigned"
        ),
    ]
    if type_matched and task_type is not None:
        parts.append(f"{agent.agent_type} suits {task_type.value}")
    if agent.tier == Tier.DEGRADED:
        parts.append("DEGRADED tier, chosen only as a last resort")
    return ScoreBreakdown(
        tier=agent.tier,
        tier_rank=agent.tier.rank,
        load=agent.current_load,
        success_rate=rate,
        last_assigned_at=agent.last_assigned_at,
        type_matched=type_matched,
        reason=f"{agent.name}: " + ", ".join(parts),
        record=record,
        learned=learned,
    )


def _no_agent(
    agents: Sequence[Agent],
    holders: list[Agent],
    required: tuple[str, ...],
    excluded_ids: frozenset[UUID],
) -> NoAgentAvailable:
    held = {c for a in agents for c in a.capabilities}
    missing = [c for c in required if c not in held]
    excluded = dict.fromkeys(EXCLUSION_REASONS, 0)
    for agent in holders:
        reason = _exclusion_reason(agent, excluded_ids)
        if reason is not None:
            excluded[reason] += 1
    wanted = ", ".join(required) if required else "no particular capability"

    if missing:
        noun = "capability" if len(missing) == 1 else "capabilities"
        message = f"no registered agent holds the {noun} {', '.join(missing)}"
    elif not agents:
        message = "no agent is registered"
    elif not holders:
        message = f"no single agent holds all of {wanted}"
    else:
        counts = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in excluded.items() if n)
        noun = "agent holds" if len(holders) == 1 else "agents hold"
        message = f"{len(holders)} {noun} {wanted}: {counts}"
    return NoAgentAvailable(
        message,
        {
            "required_capabilities": list(required),
            "missing_capabilities": missing,
            "excluded": excluded,
            "holders": len(holders),
        },
    )
