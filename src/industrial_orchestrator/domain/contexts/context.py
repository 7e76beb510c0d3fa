"""Shared contexts: scoped JSON memory, and the rule that applies a write to one.

Scopes layer GLOBAL < SESSION < AGENT < TEMPORARY (a higher layer overrides a lower one in
the effective view, see ``context_merge.layered_view``). Owners:

- ``GLOBAL``: no owner (``owner_id`` is None, and only GLOBAL may have none);
- ``SESSION``: the session's id;
- ``AGENT``: the agent's id, a UUID (the id the registry hands out, user guide §6);
- ``TEMPORARY``: the task's id; only TEMPORARY contexts may carry ``expires_at`` (a TTL).

Writes (``apply_update``). Each context has a ``version`` (optimistic locking) and a
``VersionVector`` of the writes it holds. A write is **stale** when its ``expected_version``
is given and differs from the context's version, or when its ``seen_vector`` (what the writer
had read) is given and does not descend from the context's vector (the writer missed a write).
A write with neither is a blind write and is never stale.

- Not stale: the data replaces the context's data (``deep_merge`` merges it in instead).
- Stale, ``last_write_wins``: the write with the later ``at`` wins; on equal times the greater
  writer id wins (``lww_winner``). If the incoming write loses it is superseded: the outcome
  is ``Applied`` with ``superseded=True`` and the context unchanged. Applying any set of
  concurrent writes in any order therefore ends with the same data.
- Stale, ``deep_merge``: the incoming object is deep-merged into the current one, so no
  writer's keys are lost (on the same key the incoming value wins).
- Stale, ``manual``: nothing is applied; the outcome is a ``ContextConflict`` holding the
  current context and the incoming data, to be settled by ``resolve_conflict``.

The strategy is the update's if it names one, else the context's default: ``manual`` for a
critical context, ``last_write_wins`` otherwise. Every applied change advances ``version`` by
one and sets the vector to merge(current, seen) bumped for the writer.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from ..errors import InvalidInput
from ..plain_values import identifier, moment, optional_identifier, required_moment
from .merge import MergeStrategy as MergeStrategy
from .merge import deep_merge, ensure_json_object
from .version_vectors import VersionVector, merge

NAME_MAX_LENGTH = 200


class ContextScope(StrEnum):
    """Who sees a context (user guide §5, Context Scopes); ordered by ``layer``."""

    GLOBAL = "GLOBAL"
    SESSION = "SESSION"
    AGENT = "AGENT"
    TEMPORARY = "TEMPORARY"

    @property
    def layer(self) -> int:
        """Position in the layered view: GLOBAL 0 < SESSION 1 < AGENT 2 < TEMPORARY 3."""
        return SCOPE_LAYERS.index(self)


SCOPE_LAYERS: tuple[ContextScope, ...] = (
    ContextScope.GLOBAL,
    ContextScope.SESSION,
    ContextScope.AGENT,
    ContextScope.TEMPORARY,
)


class Resolution(StrEnum):
    """An operator's choice when settling a ``ContextConflict``."""

    CURRENT = "current"
    INCOMING = "incoming"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Context:
    """One scoped JSON object; validated on construction (``InvalidInput``)."""

    id: UUID
    scope: ContextScope
    owner_id: UUID | None
    name: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int = 1
    vector: VersionVector = field(default_factory=VersionVector)
    critical: bool = False
    expires_at: datetime | None = None
    last_writer: str | None = None

    def __post_init__(self) -> None:
        _check_owner(self.scope, self.owner_id)
        _check_name(self.name)
        ensure_json_object(self.data)
        if self.version < 1:
            raise InvalidInput("version starts at 1", {"field": "version"})
        if self.expires_at is not None:
            if self.scope is not ContextScope.TEMPORARY:
                raise InvalidInput(
                    "Only TEMPORARY contexts expire",
                    {"field": "expires_at", "scope": self.scope.value},
                )
            if self.expires_at <= self.created_at:
                raise InvalidInput("expires_at must be after created_at", {"field": "expires_at"})

    def evolve(self, **changes: Any) -> Context:
        return dataclasses.replace(self, **changes)

    @property
    def default_strategy(self) -> MergeStrategy:
        """``manual`` for critical contexts (an operator decides), else ``last_write_wins``."""
        return MergeStrategy.MANUAL if self.critical else MergeStrategy.LAST_WRITE_WINS

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def context_fields(context: Context) -> dict[str, Any]:
    """The context as plain values, one per field and named after it (the scope as its
    value, the vector as a JSON object of writer -> counter, the data as it is, ids and
    times as they are): the one mapping its database row and the API's schema are made
    from, so a field added to ``Context`` reaches both."""
    return {
        "id": context.id,
        "scope": context.scope.value,
        "owner_id": context.owner_id,
        "name": context.name,
        "data": context.data,
        "created_at": context.created_at,
        "updated_at": context.updated_at,
        "version": context.version,
        "vector": context.vector.to_json(),
        "critical": context.critical,
        "expires_at": context.expires_at,
        "last_writer": context.last_writer,
    }


def context_from_fields(fields: Mapping[str, Any]) -> Context:
    """``context_fields`` read back, from a row or from JSON: ids and times may come as
    text, and a time without a zone is UTC (SQLite gives them back so)."""
    return Context(
        id=identifier(fields["id"]),
        scope=ContextScope(fields["scope"]),
        owner_id=optional_identifier(fields["owner_id"]),
        name=fields["name"],
        data=dict(fields["data"]),
        created_at=required_moment(fields["created_at"]),
        updated_at=required_moment(fields["updated_at"]),
        version=int(fields["version"]),
        vector=VersionVector.from_json(fields["vector"]),
        critical=bool(fields["critical"]),
        expires_at=moment(fields["expires_at"]),
        last_writer=fields["last_writer"],
    )


def new_context(
    *,
    id: UUID,
    scope: ContextScope,
    owner_id: UUID | None,
    name: str,
    data: dict[str, Any],
    now: datetime,
    critical: bool = False,
    ttl: timedelta | None = None,
    creator: str | None = None,
) -> Context:
    """A context at version 1; its vector counts the creator's write when one is named."""
    if ttl is not None and ttl <= timedelta(0):
        raise InvalidInput("ttl must be positive", {"field": "ttl"})
    return Context(
        id=id,
        scope=scope,
        owner_id=owner_id,
        name=name,
        data=data,
        created_at=now,
        updated_at=now,
        vector=VersionVector().bump(creator) if creator else VersionVector(),
        critical=critical,
        expires_at=now + ttl if ttl is not None else None,
        last_writer=creator,
    )


@dataclass(frozen=True, slots=True)
class ContextUpdate:
    """A write: ``seen_vector`` / ``expected_version`` say what the writer had read."""

    writer: str
    data: dict[str, Any]
    at: datetime
    expected_version: int | None = None
    seen_vector: VersionVector | None = None
    strategy: MergeStrategy | None = None

    def __post_init__(self) -> None:
        _check_writer(self.writer)
        ensure_json_object(self.data)


@dataclass(frozen=True, slots=True)
class WriteStamp:
    """When and by whom a write was made; what last-write-wins compares."""

    at: datetime
    writer: str


@dataclass(frozen=True, slots=True)
class Applied:
    """The write took effect (or, ``superseded``, lost to a later write under LWW)."""

    context: Context
    strategy: MergeStrategy
    stale: bool
    superseded: bool = False


@dataclass(frozen=True, slots=True)
class ContextConflict:
    """A stale write under ``manual``: nothing applied, both sides kept for an operator."""

    current: Context
    incoming: dict[str, Any]
    writer: str
    at: datetime
    reason: str
    expected_version: int | None = None
    seen_vector: VersionVector | None = None


UpdateOutcome = Applied | ContextConflict


def lww_winner(a: WriteStamp, b: WriteStamp) -> WriteStamp:
    """The later write; on equal times the greater writer id; ``a`` when both are equal."""
    if (b.at, b.writer) > (a.at, a.writer):
        return b
    return a


def staleness(context: Context, update: ContextUpdate) -> str | None:
    """Why ``update`` did not see the current state of ``context``, or None if it did."""
    if update.expected_version is not None and update.expected_version != context.version:
        return (
            f"expected version {update.expected_version}, context {context.id} is at "
            f"version {context.version}"
        )
    if update.seen_vector is not None and not update.seen_vector.descends(context.vector):
        return (
            f"writer {update.writer!r} had seen {update.seen_vector.to_json()}, context "
            f"{context.id} holds {context.vector.to_json()}"
        )
    return None


def apply_update(context: Context, update: ContextUpdate) -> UpdateOutcome:
    """Apply one write to ``context`` by the rules in the module docstring."""
    strategy = update.strategy or context.default_strategy
    reason = staleness(context, update)
    stale = reason is not None
    if reason is not None:
        if strategy is MergeStrategy.MANUAL:
            return ContextConflict(
                current=context,
                incoming=update.data,
                writer=update.writer,
                at=update.at,
                reason=reason,
                expected_version=update.expected_version,
                seen_vector=update.seen_vector,
            )
        if strategy is MergeStrategy.LAST_WRITE_WINS:
            incoming = WriteStamp(update.at, update.writer)
            current = WriteStamp(context.updated_at, context.last_writer or "")
            if lww_winner(incoming, current) is not incoming:
                return Applied(context, strategy, stale=True, superseded=True)
    if strategy is MergeStrategy.DEEP_MERGE:
        data = deep_merge(context.data, update.data)
    else:
        data = copy.deepcopy(update.data)
    written = _write(context, data, update.writer, update.seen_vector, update.at)
    return Applied(written, strategy, stale=stale)


def resolve_conflict(
    context: Context,
    incoming: dict[str, Any],
    *,
    choose: Resolution,
    by: str,
    at: datetime,
    custom_data: dict[str, Any] | None = None,
    incoming_vector: VersionVector | None = None,
) -> Context:
    """Settle a conflict: keep the current data, take the incoming, or write ``custom_data``.

    Always a new version (the resolution is a write by ``by``) whose vector merges the
    current and incoming vectors, so the resolved state descends from both sides.
    """
    if (choose is Resolution.CUSTOM) != (custom_data is not None):
        raise InvalidInput(
            "custom_data is required for, and only for, a 'custom' resolution",
            {"field": "custom_data", "choose": choose.value},
        )
    _check_writer(by)
    chosen = {
        Resolution.CURRENT: context.data,
        Resolution.INCOMING: incoming,
        Resolution.CUSTOM: custom_data,
    }[choose]
    data = copy.deepcopy(
        ensure_json_object(chosen, "custom_data" if custom_data is not None else "data")
    )
    return _write(context, data, by, incoming_vector, at)


def _write(
    context: Context,
    data: dict[str, Any],
    writer: str,
    seen: VersionVector | None,
    at: datetime,
) -> Context:
    vector = merge(context.vector, seen) if seen is not None else context.vector
    return context.evolve(
        data=data,
        version=context.version + 1,
        vector=vector.bump(writer),
        updated_at=max(context.updated_at, at),
        last_writer=writer,
    )


def _check_owner(scope: ContextScope, owner_id: UUID | None) -> None:
    if scope is ContextScope.GLOBAL:
        if owner_id is not None:
            raise InvalidInput(
                "A GLOBAL context has no owner", {"field": "owner_id", "scope": scope.value}
            )
        return
    if not isinstance(owner_id, UUID):
        owner = {"SESSION": "session", "AGENT": "agent", "TEMPORARY": "task"}[scope.value]
        raise InvalidInput(
            f"A {scope.value} context needs its {owner}'s id (a UUID) as owner_id",
            {"field": "owner_id", "scope": scope.value},
        )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX_LENGTH:
        raise InvalidInput(
            f"A context name is 1 to {NAME_MAX_LENGTH} characters, not blank",
            {"field": "name"},
        )


def _check_writer(writer: object) -> None:
    if not isinstance(writer, str) or not writer:
        raise InvalidInput("A writer id is a non-empty string", {"field": "writer"})
