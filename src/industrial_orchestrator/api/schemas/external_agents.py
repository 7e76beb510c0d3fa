"""The External Agent Protocol's messages (user guide §6), validated strictly: agents
are untrusted, and an unknown field is a mistake to report, not to ignore."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, PlainSerializer

from ...domain.agents.agent import AgentStatus
from ...domain.tasks.task import TaskType
from ...services.ports import StoredArtifact
from .agents import metadata_size
from .common import StrictModel
from .tasks import Capability

SUPPORTED_PROTOCOL_VERSIONS = ("1.0",)

Metadata = Annotated[dict[str, Any], AfterValidator(metadata_size)]


class ExternalRegister(StrictModel):
    protocol_version: str = Field(
        max_length=16, description=f"One of {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}"
    )
    name: str = Field(min_length=1, max_length=200, description="Unique among agents")
    version: str | None = Field(None, max_length=64, description="The agent's own version")
    agent_type: str = Field(min_length=1, max_length=64)
    capabilities: list[Capability] = Field(min_length=1, max_length=64)
    endpoint_url: str | None = Field(None, max_length=2048)
    max_concurrent_tasks: int = Field(1, ge=1, le=1000)
    metadata: Metadata = Field(default_factory=dict)


def _whole_when_integral(seconds: float) -> int | float:
    return int(seconds) if seconds.is_integer() else seconds


IntervalSeconds = Annotated[
    float,
    PlainSerializer(_whole_when_integral, return_type=int | float),
    Field(
        description="Seconds between heartbeats: an integer (the default `30`), a fraction "
        "only when AGENT_HEARTBEAT_SECONDS is set to one"
    ),
]
"""The guide shows ``30``; a client that decodes it strictly as an integer must not be
handed ``30.0``."""


class Registered(BaseModel):
    agent_id: UUID
    status: Literal["registered"] = "registered"
    auth_token: str = Field(description="Send as `Authorization: Bearer` with `X-Agent-ID`")
    token_expires_at: datetime
    heartbeat_interval_seconds: IntervalSeconds


class ExternalHeartbeat(StrictModel):
    status: AgentStatus
    current_load: float | None = Field(None, ge=0, le=1)
    tasks_in_progress: int | None = Field(
        None, ge=0, le=100_000, description="Kept as reported; leases are counted by us"
    )
    metrics: Metadata = Field(default_factory=dict)
    timestamp: datetime | None = Field(None, description="The agent's clock, for reference")
    task_ids: list[UUID] | None = Field(
        None,
        max_length=10_000,
        description="The tasks the agent is working on: only their leases are renewed, and a "
        "lease it has had for 30 s without listing it (the answer to its pull never reached "
        "it) is let go, its task back in the queue. Omitted: renew all.",
    )


class LeaseRead(BaseModel):
    task_id: UUID
    attempt: int
    lease_expires_at: datetime


class HeartbeatAck(BaseModel):
    agent_id: UUID
    status: AgentStatus
    auth_token: str = Field(description="A fresh token: use it from now on")
    token_expires_at: datetime
    heartbeat_interval_seconds: IntervalSeconds
    leases: list[LeaseRead] = Field(description="The leases this heartbeat renewed")
    abort: list[UUID] = Field(
        default_factory=list,
        description="Of the `task_ids` sent, those no longer this agent's (the session was "
        "paused or stopped, the task cancelled, the lease expired): stop working on them; "
        "a result for them would be refused",
    )


class TaskAssignment(BaseModel):
    task_id: UUID
    session_id: UUID | None
    task_type: TaskType
    title: str
    context: dict[str, Any]
    input_data: str
    requirements: list[str]
    timeout_seconds: int
    attempt: int = Field(description="The fencing token: send it back with the result")
    lease_expires_at: datetime = Field(description="Renewed by each heartbeat")


class ArtifactIn(StrictModel):
    path: str = Field(min_length=1, max_length=1024, description="Relative to the workspace")
    content: str
    mime_type: str | None = Field(None, max_length=127)
    encoding: Literal["utf-8", "base64"] = "utf-8"


class TaskResultIn(StrictModel):
    task_id: UUID
    status: Literal["completed", "failed"]
    attempt: int | None = Field(
        None, ge=1, description="The attempt this result is for (as assigned); checked"
    )
    artifacts: list[ArtifactIn] = Field(default_factory=list)
    output_data: Metadata = Field(default_factory=dict)
    error: str | None = Field(None, max_length=10_000)
    execution_time_ms: int | None = Field(None, ge=0)
    tokens_used: int = Field(0, ge=0, le=1_000_000_000)
    cost_usd: float = Field(0.0, ge=0, le=1_000_000)


class ArtifactRead(BaseModel):
    attempt: int
    path: str
    mime_type: str
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the content, hex")
    created_at: datetime

    @classmethod
    def of(cls, stored: StoredArtifact) -> ArtifactRead:
        return cls(
            attempt=stored.attempt,
            path=stored.path,
            mime_type=stored.mime_type,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            created_at=stored.created_at,
        )


class TaskResultAck(BaseModel):
    task_id: UUID
    attempt: int
    task_status: str = Field(description="The task's status after this result")
    artifacts: list[ArtifactRead]
    written: list[str] = Field(description="Artifact paths written into the workspace")
