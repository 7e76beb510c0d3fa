"""Agent resource: registry, heartbeats, statistics and routing."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field

from ...domain.agents.agent import Agent, AgentKind, AgentStatus, agent_fields
from ...domain.agents.records import MIN_SAMPLES, WINDOW, AgentRecord
from ...domain.agents.routing import RoutingDecision, ScoreBreakdown
from ...domain.agents.tiers import Tier
from ...domain.tasks.task import TaskType
from ...services.agents import AgentStats
from .common import StrictModel
from .tasks import Capability

MAX_METADATA_BYTES = 64 * 1024


def metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES} bytes")
    return value


class AgentRegister(StrictModel):
    name: str = Field(min_length=1, max_length=200, description="Unique")
    agent_type: str = Field(
        min_length=1, max_length=64, description="architect, implementer, reviewer, ..."
    )
    capabilities: list[Capability] = Field(min_length=1, max_length=64)
    kind: AgentKind = AgentKind.INTERNAL
    max_concurrent_tasks: int = Field(1, ge=1, le=1000)
    metadata: Annotated[dict[str, Any], AfterValidator(metadata_size)] = Field(default_factory=dict)


class AgentRead(BaseModel):
    id: UUID
    name: str
    agent_type: str
    capabilities: list[str]
    kind: AgentKind
    status: AgentStatus
    tier: Tier
    success_rate: float | None = Field(description="Successes over finished tasks")
    success_count: int
    failure_count: int
    current_load: float
    tasks_in_progress: int
    max_concurrent_tasks: int
    last_heartbeat: datetime | None
    last_assigned_at: datetime | None
    registered_at: datetime
    metadata: dict[str, Any]
    version: int

    @classmethod
    def of(cls, agent: Agent) -> AgentRead:
        return cls(**agent_fields(agent), tier=agent.tier, success_rate=agent.success_rate)


class AgentPage(BaseModel):
    items: list[AgentRead]
    total: int
    page: int
    page_size: int


class AgentRecordRead(BaseModel):
    """How the agent has done one task type: its most recent finished attempts at tasks
    of that type (completed, failed or expired; released ones are not held against it)."""

    task_type: TaskType
    attempts: int = Field(
        description=f"Finished attempts counted: the latest {WINDOW} within 30 days"
    )
    successes: int = Field(description="Of them, completed")
    success_rate: float = Field(description="successes / attempts, from 0 to 1")
    median_duration_ms: int | None = Field(
        description="Median time of the completed attempts (as reported by the agent, else "
        "lease to result); null before the first success"
    )
    mean_cost_usd: float = Field(description="Mean cost per attempt, failed ones included")
    counts: bool = Field(description=f"Long enough ({MIN_SAMPLES} attempts) for routing to use it")

    @classmethod
    def of(cls, record: AgentRecord) -> AgentRecordRead:
        return cls(
            task_type=record.task_type,
            attempts=record.attempts,
            successes=record.successes,
            success_rate=record.success_rate,
            median_duration_ms=record.median_duration_ms,
            mean_cost_usd=record.mean_cost_usd,
            counts=record.counts,
        )


class AgentDetail(AgentRead):
    """An agent with its record per task type (what learned routing ranks by)."""

    records: list[AgentRecordRead] = Field(
        description="One per task type the agent has finished attempts at, by type"
    )

    @classmethod
    def with_records(cls, agent: Agent, records: list[AgentRecord]) -> AgentDetail:
        return cls(
            **AgentRead.of(agent).model_dump(),
            records=[AgentRecordRead.of(record) for record in records],
        )


class Heartbeat(StrictModel):
    status: AgentStatus | None = Field(None, description="What the agent says it is")
    current_load: float | None = Field(None, ge=0, le=1)
    tasks_in_progress: int | None = Field(None, ge=0, le=100_000)


class AgentStatsRead(BaseModel):
    total: int
    active: int = Field(description="Not offline")
    by_status: dict[AgentStatus, int]
    by_tier: dict[Tier, int]
    by_kind: dict[AgentKind, int]
    average_load: float

    @classmethod
    def of(cls, stats: AgentStats) -> AgentStatsRead:
        return cls(
            total=stats.total,
            active=stats.active,
            by_status=stats.by_status,
            by_tier=stats.by_tier,
            by_kind=stats.by_kind,
            average_load=stats.average_load,
        )


class RouteRequest(StrictModel):
    required_capabilities: list[Capability] = Field(default_factory=list, max_length=64)
    task_type: TaskType | None = None
    exclude: list[UUID] = Field(default_factory=list, max_length=1000)


class ScoreRead(BaseModel):
    tier: Tier
    load: float
    success_rate: float | None
    last_assigned_at: datetime | None
    type_matched: bool
    reason: str
    record: AgentRecordRead | None = Field(
        None, description="The agent's record for the task type, when it has one"
    )
    learned: bool = Field(
        False,
        description="True when records for the task type ranked the candidates (before "
        "tier and load); false when no candidate's record counts yet",
    )

    @classmethod
    def of(cls, score: ScoreBreakdown) -> ScoreRead:
        return cls(
            tier=score.tier,
            load=score.load,
            success_rate=score.success_rate,
            last_assigned_at=score.last_assigned_at,
            type_matched=score.type_matched,
            reason=score.reason,
            record=AgentRecordRead.of(score.record) if score.record is not None else None,
            learned=score.learned,
        )


class RankedAgent(BaseModel):
    agent: AgentRead
    score: ScoreRead


class RouteResult(BaseModel):
    chosen: RankedAgent
    runners_up: list[RankedAgent]
    considered: int = Field(description="How many agents qualified")

    @classmethod
    def of(cls, decision: RoutingDecision) -> RouteResult:
        return cls(
            chosen=RankedAgent(
                agent=AgentRead.of(decision.chosen), score=ScoreRead.of(decision.score)
            ),
            runners_up=[
                RankedAgent(agent=AgentRead.of(agent), score=ScoreRead.of(score))
                for agent, score in decision.runners_up
            ],
            considered=decision.considered,
        )
