"""Session resource: create, read, page, stats, state reference, history, actions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StrictBool, StrictInt

from ...domain.priorities import Priority
from ...domain.sessions.actions import allowed_actions
from ...domain.sessions.options import (
    DEFAULT_REVIEW_ROUNDS,
    TEMPLATE_CHOICES,
    SessionOptions,
    session_options,
)
from ...domain.sessions.session import (
    Actor,
    Session,
    SessionPhase,
    Transition,
    session_fields,
)
from ...domain.sessions.states import (
    STATE_TABLE,
    SessionState,
    StateCategory,
    StateInfo,
    allowed_targets,
)
from ...services.sessions import SessionStats
from .common import StrictModel

MAX_PROMPT_BYTES = 256 * 1024
MAX_METADATA_BYTES = 64 * 1024
MAX_REASON_CHARS = 2000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _prompt_size(value: str) -> str:
    size = len(value.encode("utf-8"))
    if size > MAX_PROMPT_BYTES:
        raise ValueError(f"is {size} bytes; the limit is {MAX_PROMPT_BYTES} bytes (256 KiB)")
    return value


def _metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES} bytes")
    return value


Title = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
Prompt = Annotated[str, Field(min_length=1), AfterValidator(_prompt_size)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata_size)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON_CHARS)]


def _known_template(value: str) -> str:
    if value not in TEMPLATE_CHOICES:
        raise ValueError(f"must be one of {', '.join(TEMPLATE_CHOICES)}")
    return value


class SessionCreate(StrictModel):
    title: Title = Field(description="Human-readable identifier, 1-200 characters")
    initial_prompt: Prompt = Field(
        description="The instruction for the agents, 1 byte to 256 KiB of UTF-8"
    )
    priority: Priority | None = Field(
        None, description="LOW, MEDIUM, HIGH or CRITICAL; DEFAULT_SESSION_PRIORITY when omitted"
    )
    workspace: str | None = Field(
        None,
        max_length=4096,
        description="Absolute path of the directory (a git repository or not) the agents "
        "work on, under one of WORKSPACE_ROOTS (else 422). The session works in its own git "
        "worktree on branch orchestrator/<short id>; the directory itself is not touched",
    )
    metadata: Metadata = Field(
        default_factory=dict, description="Free-form JSON object, up to 64 KiB"
    )
    auto_start: StrictBool = Field(False, description="Start (or queue) the session at once")
    template: Annotated[str, AfterValidator(_known_template)] | None = Field(
        None,
        json_schema_extra={"enum": [*TEMPLATE_CHOICES, None]},
        description="The plan: microservice, crud, security, ui, generic, or single (one "
        "code_generation task); omitted: chosen from the prompt",
    )
    verify_command: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Shell command run in the workspace once every task is done; exit 0 "
        "means verified, anything else sends the session back to work",
    )
    max_review_rounds: StrictInt = Field(
        DEFAULT_REVIEW_ROUNDS, ge=0, le=20, description="Failed verifications tolerated"
    )
    timeout_seconds: StrictInt | None = Field(
        None, ge=1, le=7 * 24 * 3600, description="Overrides SESSION_TIMEOUT_SECONDS"
    )
    max_tokens: StrictInt | None = Field(
        None, ge=1, description="Budget: the session fails (budget_exceeded) beyond it"
    )
    max_cost_usd: float | None = Field(
        None, gt=0, le=1_000_000, description="Budget in USD: the session fails beyond it"
    )

    max_parallel_tasks: StrictInt | None = Field(
        None,
        ge=1,
        le=1000,
        description="Tasks of this session worked on at once; SESSION_MAX_PARALLEL_TASKS "
        "when omitted",
    )
    planner: Literal["template", "agent"] = Field(
        "template",
        description="`template`: the plan comes from the decomposition templates; `agent`: "
        "the architect agent proposes it, checked like a template's (acyclic, capabilities "
        "some agent has), the template plan standing in when it is unusable",
    )

    def options(self) -> SessionOptions:
        return session_options(
            template=self.template,
            verify_command=self.verify_command,
            max_review_rounds=self.max_review_rounds,
            timeout_seconds=self.timeout_seconds,
            max_tokens=self.max_tokens,
            max_cost_usd=self.max_cost_usd,
            max_parallel_tasks=self.max_parallel_tasks,
            planner=self.planner,
        )


class OptionsRead(BaseModel):
    template: str | None
    verify_command: str | None
    max_review_rounds: int
    timeout_seconds: int | None
    max_tokens: int | None
    max_cost_usd: float | None
    max_parallel_tasks: int | None
    planner: str
    amendment: str | None = Field(
        None, description="The instruction added when the session was forked"
    )
    agents: list[str] = Field(
        default_factory=list,
        description="The agents its tasks are for, by name; empty: any capable agent",
    )


class ActionRequest(StrictModel):
    reason: Reason | None = Field(None, description="Why, recorded in the history")
    expected_version: StrictInt | None = Field(
        None, ge=1, description="Refuse with 409 unless the session is at this version"
    )


class FailRequest(ActionRequest):
    reason: Reason = Field(description="Why the session failed, recorded in the history")


class RetryRequest(StrictModel):
    start: StrictBool = Field(False, description="Start (or queue) the new attempt at once")


class ForkRequest(StrictModel):
    checkpoint_id: UUID = Field(description="One of the session's checkpoints to start from")
    amendment: str | None = Field(
        None,
        min_length=1,
        max_length=20_000,
        description="An extra instruction, added to the prompt of every task still to do",
    )
    title: Title | None = Field(None, description="The fork's title; the source's when omitted")
    start: StrictBool = Field(False, description="Start (or queue) the fork at once")
    verify_command: str | None = Field(
        None, min_length=1, max_length=4096, description="Instead of the source's"
    )
    max_review_rounds: StrictInt | None = Field(
        None, ge=0, le=20, description="Instead of the source's"
    )
    timeout_seconds: StrictInt | None = Field(
        None, ge=1, le=7 * 24 * 3600, description="Instead of the source's"
    )
    max_tokens: StrictInt | None = Field(None, ge=1, description="Instead of the source's")
    max_cost_usd: float | None = Field(
        None, gt=0, le=1_000_000, description="Instead of the source's"
    )
    max_parallel_tasks: StrictInt | None = Field(
        None, ge=1, le=1000, description="Instead of the source's"
    )
    agents: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None,
        max_length=50,
        description="Only these agents (by name) work on the fork's tasks; [] lets any "
        "capable agent again; omitted: the source's choice",
    )

    def overrides(self) -> dict[str, Any]:
        names = (
            "agents",
            "verify_command",
            "max_review_rounds",
            "timeout_seconds",
            "max_tokens",
            "max_cost_usd",
            "max_parallel_tasks",
        )
        return {name: getattr(self, name) for name in names if name in self.model_fields_set}


class LineageRead(BaseModel):
    retry_of: UUID | None = Field(description="The session this one retries")
    retried_as: UUID | None = Field(description="The session that retries this one")
    forked_from: UUID | None = Field(description="The session this one was forked from")
    restored_from_checkpoint: UUID | None = Field(
        description="The checkpoint this one started from (a retry's or a fork's)"
    )
    forks: list[UUID] = Field(description="Sessions forked from this one, oldest first")


class StateRead(BaseModel):
    state: SessionState
    emoji: str
    color: str = Field(description="Colour code of the state, #RRGGBB")
    terminal: bool
    category: StateCategory
    description: str
    transitions: list[SessionState] = Field(description="States reachable from this one")
    actions: list[str] = Field(description="Operator verbs accepted in this state")

    @classmethod
    def of(cls, info: StateInfo) -> StateRead:
        return cls(
            state=info.state,
            emoji=info.emoji,
            color=info.color,
            terminal=info.terminal,
            category=info.category,
            description=info.description,
            transitions=allowed_targets(info.state),
            actions=allowed_actions(info.state),
        )


class SessionRead(BaseModel):
    id: UUID
    title: str
    initial_prompt: str
    priority: Priority
    status: SessionState
    status_emoji: str
    status_color: str
    terminal: bool
    phase: SessionPhase | None = Field(description="PLANNING, EXECUTING or REVIEWING while active")
    status_reason: str | None
    workspace: str | None
    metadata: dict[str, Any]
    version: int = Field(description="Bumped by every change; send it back as expected_version")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    retry_of: UUID | None = Field(description="The session this one is a retry of")
    forked_from: UUID | None = Field(
        None, description="The session whose checkpoint this one was forked from"
    )
    attempt: int
    restored_from_checkpoint: UUID | None
    tokens_used: int
    cost_usd: float
    options: OptionsRead
    review_round: int = Field(description="Failed verifications so far")
    worktree: str | None = Field(
        None, description="The session's own git working tree (set when it first runs)"
    )
    branch: str | None = Field(
        None, description="The git branch its work is committed to, left for you to merge"
    )
    base_commit: str | None = Field(None, description="The commit the branch started from")
    allowed_actions: list[str]

    @classmethod
    def of(cls, session: Session) -> SessionRead:
        fields = session_fields(session)
        # The history's sequence and the engine's checkpoint clock are not the API's.
        del fields["transition_seq"], fields["checkpoint_checked_at"]
        info = STATE_TABLE[session.status]
        return cls(
            **fields,
            status_emoji=info.emoji,
            status_color=info.color,
            terminal=info.terminal,
            duration_seconds=session.duration_seconds,
            allowed_actions=allowed_actions(session.status),
        )


class SessionPage(BaseModel):
    items: list[SessionRead]
    total: int
    page: int
    page_size: int


class TransitionRead(BaseModel):
    seq: int = Field(description="Per-session sequence number: 1, 2, 3... with no gap")
    from_state: SessionState | None = Field(description="None for the creation record")
    to_state: SessionState
    reason: str | None
    actor: Actor
    at: datetime

    @classmethod
    def of(cls, record: Transition) -> TransitionRead:
        return cls(
            seq=record.seq,
            from_state=record.from_state,
            to_state=record.to_state,
            reason=record.reason,
            actor=record.actor,
            at=record.at,
        )


class SessionStatsRead(BaseModel):
    by_state: dict[SessionState, int] = Field(description="Count of sessions in each state")
    total: int
    running: int = Field(description="Sessions holding a running slot (RUNNING or DEGRADED)")
    succeeded: int = Field(description="COMPLETED + PARTIALLY_COMPLETED")
    failed: int = Field(description="FAILED + TIMEOUT")
    ended_by_operator: int = Field(
        description="STOPPED + CANCELLED: not a verdict on the work, not in the success rate"
    )
    orphaned: int = Field(description="ORPHANED (lost by the system): not in the success rate")
    success_rate: float | None = Field(
        description="succeeded / (succeeded + failed); null before any session got there"
    )
    average_duration_seconds: float | None = Field(
        description="Mean time from first start to finish over finished sessions"
    )
    tokens_used: int
    cost_usd: float

    @classmethod
    def of(cls, stats: SessionStats) -> SessionStatsRead:
        return cls(
            by_state=stats.by_state,
            total=stats.total,
            running=stats.running,
            succeeded=stats.outcomes.succeeded,
            failed=stats.outcomes.failed,
            ended_by_operator=stats.outcomes.ended_by_operator,
            orphaned=stats.outcomes.lost,
            success_rate=stats.success_rate,
            average_duration_seconds=stats.average_duration_seconds,
            tokens_used=stats.tokens_used,
            cost_usd=stats.cost_usd,
        )
