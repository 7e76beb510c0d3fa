"""Webhooks: which stored events become notifications, how a notification is signed, and
when a failed delivery is tried again.

A webhook chooses among a few *kinds* of notification, each read off the event log:

* ``session.finished``: a session reached a successful end (the SUCCESS category of the
  state table: COMPLETED, PARTIALLY_COMPLETED);
* ``session.failed``: a session ended any other way (FAILED, TIMEOUT, STOPPED,
  CANCELLED, ORPHANED);
* ``permission.asked``: an agent waits for the operator to answer a permission request;
* ``budget.warning``: a result took a session to 80 % of its token (or cost) budget;
* ``agent.degraded``: an agent went degraded or offline, or fell to the DEGRADED tier.

Nothing here does I/O: the service queues what ``notices`` finds and the dispatcher sends
``body`` with ``headers``; the receiver checks ``X-Orchestrator-Signature`` with ``verify``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from .agents.agent import AgentStatus
from .agents.tiers import Tier
from .errors import InvalidInput
from .events import Event, EventType, LogStream
from .sessions.states import STATE_TABLE, SessionState, StateCategory


class WebhookEvent(StrEnum):
    SESSION_FINISHED = "session.finished"
    SESSION_FAILED = "session.failed"
    PERMISSION_ASKED = "permission.asked"
    BUDGET_WARNING = "budget.warning"
    AGENT_DEGRADED = "agent.degraded"


TEST_KIND = "webhook.test"
"""The kind of the delivery ``POST /webhooks/{id}/test`` queues; no webhook chooses it."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


SIGNATURE_HEADER = "X-Orchestrator-Signature"
EVENT_HEADER = "X-Orchestrator-Event"
DELIVERY_HEADER = "X-Orchestrator-Delivery"
ATTEMPT_HEADER = "X-Orchestrator-Attempt"

SECRET_PREFIX = "whsec_"
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 200
MAX_URL_LENGTH = 2000
BUDGET_WARNING_RATIO = 0.8

SESSION_FINISHED_STATES = frozenset(
    state
    for state, info in STATE_TABLE.items()
    if info.terminal and info.category == StateCategory.SUCCESS
)
SESSION_FAILED_STATES = frozenset(
    state
    for state, info in STATE_TABLE.items()
    if info.terminal and info.category != StateCategory.SUCCESS
)
DEGRADED_AGENT_STATUSES = frozenset({AgentStatus.DEGRADED, AgentStatus.OFFLINE})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Webhook:
    id: UUID
    name: str
    url: str
    secret: str
    """Signs every body; stored as given, shown only when the webhook is created."""
    events: frozenset[WebhookEvent]
    active: bool
    created_at: datetime
    last_event_id: int = 0
    """The newest event of the log this webhook has been considered for."""

    def wants(self, kind: str) -> bool:
        return kind in self.events


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification to one webhook, and how its sending went so far."""

    id: UUID
    webhook_id: UUID
    event_id: int | None
    """The event log's global id; None for a test delivery."""
    kind: str
    payload: dict[str, Any]
    status: DeliveryStatus
    created_at: datetime
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """What one event tells the webhooks that chose ``kind``."""

    kind: WebhookEvent
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Budget:
    max_tokens: int | None = None
    max_cost_usd: float | None = None


# -- which events notify ------------------------------------------------------------------

_PERMISSION_NEEDED = "permission needed: "
_PERMISSION_LINE = re.compile(
    r"^permission needed: (?P<what>.*) \(request (?P<request_id>[^)\s]+)\)", re.DOTALL
)


def permission_needed_line(what: str, request_id: str) -> str:
    """The session log line saying an agent waits for the operator's answer (written by
    the executor, read back by ``notices``)."""
    return (
        f"{_PERMISSION_NEEDED}{what} (request {request_id}); approve or reject it at "
        "/api/v1/sessions/{id}/permissions"
    )


def needs_budget(event: Event) -> bool:
    """Whether ``notices`` needs the session's budget to judge ``event``."""
    return event.type == EventType.SESSION_TELEMETRY


def notices(event: Event, budget: Budget | None = None) -> list[Notice]:
    """The notifications ``event`` gives rise to (usually none). ``budget`` is the
    event's session's, for ``session.telemetry`` events (see ``needs_budget``)."""
    payload = event.payload
    session = str(event.session_id) if event.session_id else None
    if event.type == EventType.SESSION_TRANSITION:
        target = _state(payload.get("to"))
        if target is None:
            return []
        if target in SESSION_FINISHED_STATES:
            kind = WebhookEvent.SESSION_FINISHED
        elif target in SESSION_FAILED_STATES:
            kind = WebhookEvent.SESSION_FAILED
        else:
            return []
        return [
            Notice(
                kind,
                {
                    "session_id": session,
                    "state": target.value,
                    "from": payload.get("from"),
                    "reason": payload.get("reason"),
                    "actor": payload.get("actor"),
                },
            )
        ]
    if event.type == EventType.SESSION_LOG and payload.get("stream") == LogStream.SYSTEM:
        match = _PERMISSION_LINE.match(str(payload.get("text") or "").lstrip())
        if match is None:
            return []
        return [
            Notice(
                WebhookEvent.PERMISSION_ASKED,
                {
                    "session_id": session,
                    "request_id": match["request_id"],
                    "permission": match["what"].strip(),
                },
            )
        ]
    if event.type == EventType.SESSION_TELEMETRY:
        return _budget_warning(session, payload, budget)
    if event.type == EventType.AGENT_STATUS_CHANGED:
        if payload.get("to") not in DEGRADED_AGENT_STATUSES:
            return []
        return [_agent_notice(payload, "status")]
    if event.type == EventType.AGENT_TIER_CHANGED:
        if payload.get("to") != Tier.DEGRADED or payload.get("from") == Tier.DEGRADED:
            return []
        return [_agent_notice(payload, "tier")]
    return []


def _state(value: Any) -> SessionState | None:
    try:
        return SessionState(value)
    except ValueError:
        return None


def _agent_notice(payload: dict[str, Any], change: str) -> Notice:
    return Notice(
        WebhookEvent.AGENT_DEGRADED,
        {
            "agent_id": payload.get("agent_id"),
            "change": change,
            "from": payload.get("from"),
            "to": payload.get("to"),
        },
    )


def _budget_warning(
    session: str | None, payload: dict[str, Any], budget: Budget | None
) -> list[Notice]:
    """A warning when this result crossed 80 % of a budget: below it before the result
    (the totals minus this task's share), at or above it after. So one session warns once
    per budget, whatever the number of results."""
    if budget is None:
        return []
    crossed: list[str] = []
    tokens = _number(payload.get("tokens_used"))
    task_tokens = _number(payload.get("task_tokens"))
    cost = _number(payload.get("cost_usd"))
    task_cost = _number(payload.get("task_cost_usd"))
    if budget.max_tokens and _crosses(tokens - task_tokens, tokens, budget.max_tokens):
        crossed.append("tokens")
    if budget.max_cost_usd and _crosses(cost - task_cost, cost, budget.max_cost_usd):
        crossed.append("cost")
    if not crossed:
        return []
    return [
        Notice(
            WebhookEvent.BUDGET_WARNING,
            {
                "session_id": session,
                "crossed": crossed,
                "threshold": BUDGET_WARNING_RATIO,
                "tokens_used": int(tokens),
                "max_tokens": budget.max_tokens,
                "cost_usd": cost,
                "max_cost_usd": budget.max_cost_usd,
            },
        )
    ]


def _crosses(before: float, after: float, limit: float) -> bool:
    threshold = limit * BUDGET_WARNING_RATIO
    return before < threshold <= after


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


# -- what is sent ---------------------------------------------------------------------------


def body(delivery: Delivery) -> bytes:
    """The exact bytes sent (and signed): the same on every attempt."""
    document = {
        "id": str(delivery.id),
        "kind": delivery.kind,
        "webhook_id": str(delivery.webhook_id),
        "event_id": delivery.event_id,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, content: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``content`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


def verify(secret: str, content: bytes, header: str) -> bool:
    """What a receiver does: whether ``header`` is the signature of ``content``."""
    return hmac.compare_digest(signature(secret, content).encode(), header.encode())


def headers(delivery: Delivery, secret: str, content: bytes, attempt: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, content),
        EVENT_HEADER: delivery.kind,
        DELIVERY_HEADER: str(delivery.id),
        ATTEMPT_HEADER: str(attempt),
    }


# -- retries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt n (n >= 1) failed: the next one waits ``first_delay * 2**(n-1)`` seconds,
    at most ``max_delay``; after ``max_attempts`` the delivery is ``failed``."""

    max_attempts: int
    first_delay: float
    max_delay: float = 3600.0

    def delay(self, attempts_made: int) -> float:
        exponent = max(attempts_made - 1, 0)
        if exponent > 60:  # 2**60 s is past any cap
            return self.max_delay
        return float(min(self.first_delay * 2**exponent, self.max_delay))

    def schedule(self, attempts_made: int) -> list[float]:
        """The waits between ``attempts_made`` attempts."""
        return [self.delay(n) for n in range(1, attempts_made)]


def claimed(delivery: Delivery, now: datetime, answer_within: float) -> Delivery:
    """The delivery as recorded just before an attempt: the attempt counted, and due
    again once the attempt must have ended (a sender that died mid-way is retried)."""
    return replace(
        delivery,
        attempts=delivery.attempts + 1,
        next_attempt_at=now + timedelta(seconds=answer_within),
    )


def after_attempt(
    delivery: Delivery,
    policy: RetryPolicy,
    now: datetime,
    *,
    status_code: int | None,
    error: str | None,
) -> Delivery:
    """The delivery once the attempt ``delivery.attempts`` answered ``status_code`` (or
    failed with ``error``): delivered on a 2xx; else pending until the next attempt, or
    failed when none is left."""
    if error is None and status_code is not None and 200 <= status_code < 300:
        return replace(
            delivery,
            status=DeliveryStatus.DELIVERED,
            last_status_code=status_code,
            last_error=None,
            next_attempt_at=None,
            delivered_at=now,
        )
    reason = error or f"HTTP {status_code}"
    if delivery.attempts >= policy.max_attempts:
        return replace(
            delivery,
            status=DeliveryStatus.FAILED,
            last_status_code=status_code,
            last_error=reason[:1000],
            next_attempt_at=None,
        )
    return replace(
        delivery,
        status=DeliveryStatus.PENDING,
        last_status_code=status_code,
        last_error=reason[:1000],
        next_attempt_at=now + timedelta(seconds=policy.delay(delivery.attempts)),
    )


def abandoned(delivery: Delivery) -> Delivery:
    """A delivery whose last allowed attempt never recorded its outcome (the sender
    stopped mid-way): no attempt is left."""
    return replace(
        delivery,
        status=DeliveryStatus.FAILED,
        last_error=delivery.last_error or "the last attempt ended without an answer recorded",
        next_attempt_at=None,
    )


# -- what a webhook may be ------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(
            f"webhook name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit",
            {"field": "name"},
        )
    return name


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host, or ``InvalidInput``."""
    problem = None
    if len(url) > MAX_URL_LENGTH:
        problem = f"at most {MAX_URL_LENGTH} characters"
    elif not url.isascii() or not url.isprintable() or " " in url:
        problem = "printable ASCII without spaces (punycode for international host names)"
    else:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            problem = "a valid URL"
        else:
            if parts.scheme not in ("http", "https"):
                problem = "an http:// or https:// URL"
            elif not parts.hostname:
                problem = "a URL with a host"
            elif parts.username is not None or parts.password is not None:
                problem = "a URL without credentials in it (the body is signed instead)"
    if problem is not None:
        raise InvalidInput(f"webhook url must be {problem}", {"field": "url"})
    return url


def check_events(kinds: Iterable[str]) -> frozenset[WebhookEvent]:
    """The chosen kinds; ``InvalidInput`` naming the valid ones for an unknown or none."""
    valid = ", ".join(kind.value for kind in WebhookEvent)
    chosen: set[WebhookEvent] = set()
    for kind in kinds:
        try:
            chosen.add(WebhookEvent(kind))
        except ValueError:
            raise InvalidInput(
                f"unknown webhook event {kind!r}; choose among {valid}",
                {"field": "events", "choices": [k.value for k in WebhookEvent]},
            ) from None
    if not chosen:
        raise InvalidInput(
            f"choose at least one webhook event among {valid}",
            {"field": "events", "choices": [k.value for k in WebhookEvent]},
        )
    return frozenset(chosen)


def check_secret(secret: str) -> str:
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH or not secret.isprintable():
        raise InvalidInput(
            f"webhook secret must be {MIN_SECRET_LENGTH}-{MAX_SECRET_LENGTH} printable characters",
            {"field": "secret"},
        )
    return secret
