"""Context resource: scoped shared memory, writes by strategy, conflicts, merged views."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StrictInt

from ...domain.contexts.conflicts import ConflictRecord, ConflictStatus, conflict_fields
from ...domain.contexts.context import (
    Context,
    ContextScope,
    MergeStrategy,
    Resolution,
    context_fields,
)
from ...domain.contexts.merge import LayeredView, MergeResult
from .common import StrictModel

MAX_DATA_BYTES = 1024 * 1024


def _data_size(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_DATA_BYTES:
        raise ValueError(f"is {size} bytes as JSON; the limit is {MAX_DATA_BYTES} bytes (1 MiB)")
    return value


Data = Annotated[dict[str, Any], AfterValidator(_data_size)]
Writer = Annotated[str, Field(min_length=1, max_length=200, description="Who writes")]
Vector = dict[str, Annotated[int, Field(ge=0)]]


class ContextCreate(StrictModel):
    scope: ContextScope
    owner_id: UUID | None = Field(
        None,
        description="Session id (SESSION), agent id (AGENT), task id (TEMPORARY); none for GLOBAL",
    )
    name: str = Field(min_length=1, max_length=200)
    data: Data = Field(default_factory=dict, description="A JSON object, up to 1 MiB")
    critical: bool = Field(False, description="Critical contexts default to `manual` merges")
    ttl_seconds: float | None = Field(
        None, gt=0, le=31_536_000, description="TEMPORARY only: removed after this long"
    )
    writer: Writer | None = None


class ContextRead(BaseModel):
    id: UUID
    scope: ContextScope
    owner_id: UUID | None
    name: str
    data: dict[str, Any]
    version: int
    vector: dict[str, int] = Field(description="Version vector: writer -> writes seen")
    critical: bool
    default_strategy: MergeStrategy
    expires_at: datetime | None
    last_writer: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, context: Context) -> ContextRead:
        return cls(**context_fields(context), default_strategy=context.default_strategy)


class ContextPatch(StrictModel):
    writer: Writer
    data: Data
    expected_version: StrictInt | None = Field(
        None, ge=1, description="The version the writer read; a different one makes it stale"
    )
    seen_vector: Vector | None = Field(
        None, description="The vector the writer read; one it does not descend from is stale"
    )
    strategy: MergeStrategy | None = Field(
        None, description="Default: manual for critical contexts, else last_write_wins"
    )


class WriteRead(BaseModel):
    context: ContextRead
    strategy: MergeStrategy
    stale: bool = Field(description="The writer had not seen the current version")
    superseded: bool = Field(description="last_write_wins kept a later write instead")


class ConflictRead(BaseModel):
    id: UUID
    context_id: UUID
    writer: str
    reason: str
    incoming: dict[str, Any]
    incoming_vector: dict[str, int] | None
    current_version: int = Field(description="The context's version when it was refused")
    current_data: dict[str, Any]
    status: ConflictStatus
    resolution: Resolution | None
    resolved_by: str | None
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, record: ConflictRecord) -> ConflictRead:
        return cls(**conflict_fields(record))


class ConflictResolve(StrictModel):
    choose: Resolution = Field(description="current, incoming or custom")
    data: Data | None = Field(None, description="Required with `custom`")
    writer: Writer = "operator"


class MergeRequest(StrictModel):
    context_ids: list[UUID] = Field(min_length=1, max_length=100)
    strategy: MergeStrategy = MergeStrategy.DEEP_MERGE


class KeyConflictRead(BaseModel):
    path: list[str]
    values: dict[str, Any] = Field(description="Context id -> its value at that path")


class MergeResultRead(BaseModel):
    data: dict[str, Any]
    conflicts: list[KeyConflictRead]

    @classmethod
    def of(cls, result: MergeResult) -> MergeResultRead:
        return cls(
            data=result.data,
            conflicts=[
                KeyConflictRead(path=list(c.path), values={str(k): v for k, v in c.values.items()})
                for c in result.conflicts
            ],
        )


class EffectiveView(BaseModel):
    data: dict[str, Any]
    provenance: dict[str, UUID] = Field(description="Top-level key -> the context it came from")
    layers: list[ContextRead] = Field(description="The contexts merged, lowest layer first")

    @classmethod
    def of(cls, view: LayeredView, layers: list[Context]) -> EffectiveView:
        ordered = sorted(layers, key=lambda c: (c.scope.layer, c.updated_at, str(c.id)))
        return cls(
            data=view.data,
            provenance=dict(view.provenance),
            layers=[ContextRead.of(c) for c in ordered],
        )
