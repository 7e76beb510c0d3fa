"""Which events notify which webhook kinds, the signature, the retry schedule, and what a
webhook's configuration may hold."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.agents.agent import AgentStatus
from industrial_orchestrator.domain.agents.tiers import Tier
from industrial_orchestrator.domain.errors import InvalidInput
from industrial_orchestrator.domain.events import Event, EventType, LogStream
from industrial_orchestrator.domain.sessions.states import STATE_TABLE, SessionState
from industrial_orchestrator.domain.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Budget,
    Delivery,
    DeliveryStatus,
    RetryPolicy,
    WebhookEvent,
    abandoned,
    after_attempt,
    body,
    check_events,
    check_name,
    check_secret,
    check_url,
    claimed,
    headers,
    needs_budget,
    new_secret,
    notices,
    permission_needed_line,
    signature,
    verify,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SESSION = uuid4()


def event(kind: EventType, payload: dict[str, Any], *, session: bool = True) -> Event:
    return Event(7, kind, NOW, SESSION if session else None, 3 if session else None, payload)


def transition(to: SessionState, source: SessionState = SessionState.RUNNING) -> Event:
    return event(
        EventType.SESSION_TRANSITION,
        {"from": source.value, "to": to.value, "reason": "why", "actor": "operator"},
    )


# -- sessions -----------------------------------------------------------------------------

FINISHED = {SessionState.COMPLETED, SessionState.PARTIALLY_COMPLETED}
FAILED = {
    SessionState.FAILED,
    SessionState.TIMEOUT,
    SessionState.STOPPED,
    SessionState.CANCELLED,
    SessionState.ORPHANED,
}


@pytest.mark.parametrize("state", list(SessionState))
def test_each_terminal_state_is_finished_or_failed_and_no_other_notifies(state):
    found = notices(transition(state))
    if state in FINISHED:
        assert [n.kind for n in found] == [WebhookEvent.SESSION_FINISHED]
    elif state in FAILED:
        assert [n.kind for n in found] == [WebhookEvent.SESSION_FAILED]
    else:
        assert found == []
    # The split follows the state table: every terminal state, and only those, notifies.
    assert bool(found) == STATE_TABLE[state].terminal


def test_a_session_notice_says_which_session_and_how_it_ended():
    [notice] = notices(transition(SessionState.TIMEOUT))
    assert notice.data == {
        "session_id": str(SESSION),
        "state": "TIMEOUT",
        "from": "RUNNING",
        "reason": "why",
        "actor": "operator",
    }


def test_an_unknown_target_state_notifies_nothing():
    assert notices(event(EventType.SESSION_TRANSITION, {"to": "EXPLODED"})) == []


# -- permissions --------------------------------------------------------------------------


def log(text: str, stream: LogStream = LogStream.SYSTEM) -> Event:
    return event(EventType.SESSION_LOG, {"stream": stream.value, "text": text})


def test_the_executors_permission_line_is_a_permission_notice():
    line = permission_needed_line("bash rm -rf build (twice)", "per_0123") + "\n"
    [notice] = notices(log(line))
    assert notice.kind == WebhookEvent.PERMISSION_ASKED
    assert notice.data == {
        "session_id": str(SESSION),
        "request_id": "per_0123",
        "permission": "bash rm -rf build (twice)",
    }


@pytest.mark.parametrize(
    ("text", "stream"),
    [
        (permission_needed_line("bash ls", "per_1"), LogStream.AGENT),  # an agent's own words
        ("permission allowed (inside the workspace): edit a.py", LogStream.SYSTEM),
        ("permission needed: bash ls", LogStream.SYSTEM),  # no request id
        ("asking the architect for a plan", LogStream.SYSTEM),
    ],
)
def test_other_log_lines_notify_nothing(text, stream):
    assert notices(log(text, stream)) == []


# -- budgets ------------------------------------------------------------------------------


def telemetry(tokens: int, task_tokens: int, cost: float = 0.0, task_cost: float = 0.0) -> Event:
    return event(
        EventType.SESSION_TELEMETRY,
        {
            "tokens_used": tokens,
            "task_tokens": task_tokens,
            "cost_usd": cost,
            "task_cost_usd": task_cost,
        },
    )


@pytest.mark.parametrize(
    ("before", "after", "warns"),
    [
        (0, 79, False),
        (0, 80, True),  # exactly 80 % warns
        (50, 85, True),
        (79, 200, True),  # past the budget in one result: still warned once
        (80, 90, False),  # warned already, when it reached 80
        (85, 95, False),
    ],
)
def test_a_token_budget_warns_when_a_result_reaches_80_percent(before, after, warns):
    found = notices(telemetry(after, after - before), Budget(max_tokens=100))
    assert [n.kind for n in found] == ([WebhookEvent.BUDGET_WARNING] if warns else [])
    if warns:
        assert found[0].data["crossed"] == ["tokens"]
        assert (found[0].data["tokens_used"], found[0].data["max_tokens"]) == (after, 100)


def test_a_cost_budget_warns_too_and_both_at_once_are_one_notice():
    [cost] = notices(telemetry(10, 10, 0.9, 0.5), Budget(max_cost_usd=1.0))
    assert cost.data["crossed"] == ["cost"]
    [both] = notices(telemetry(90, 90, 0.9, 0.9), Budget(max_tokens=100, max_cost_usd=1.0))
    assert both.data["crossed"] == ["tokens", "cost"]


def test_without_a_budget_telemetry_notifies_nothing():
    assert needs_budget(telemetry(90, 90))
    assert notices(telemetry(90, 90)) == []
    assert notices(telemetry(90, 90), Budget()) == []
    assert not needs_budget(transition(SessionState.COMPLETED))


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=30))
def test_a_session_warns_at_most_once_and_exactly_when_it_reaches_80_percent(increments):
    budget = Budget(max_tokens=100)
    total = 0
    warnings = 0
    for step in increments:
        total += step
        warnings += len(notices(telemetry(total, step), budget))
    assert warnings == (1 if total >= 80 else 0)


# -- agents -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(AgentStatus))
def test_an_agent_going_degraded_or_offline_notifies(status):
    found = notices(
        event(
            EventType.AGENT_STATUS_CHANGED,
            {"agent_id": "a1", "from": "healthy", "to": status.value},
            session=False,
        )
    )
    expected = status in (AgentStatus.DEGRADED, AgentStatus.OFFLINE)
    assert [n.kind for n in found] == ([WebhookEvent.AGENT_DEGRADED] if expected else [])
    if expected:
        assert found[0].data == {
            "agent_id": "a1",
            "change": "status",
            "from": "healthy",
            "to": status.value,
        }


@pytest.mark.parametrize("tier", list(Tier))
def test_an_agent_falling_to_the_degraded_tier_notifies(tier):
    found = notices(
        event(
            EventType.AGENT_TIER_CHANGED,
            {"agent_id": "a1", "from": "COMPETENT", "to": tier.value},
            session=False,
        )
    )
    assert bool(found) == (tier == Tier.DEGRADED)


@pytest.mark.parametrize(
    "kind",
    [
        t
        for t in EventType
        if t
        not in {
            EventType.SESSION_TRANSITION,
            EventType.SESSION_LOG,
            EventType.SESSION_TELEMETRY,
            EventType.AGENT_STATUS_CHANGED,
            EventType.AGENT_TIER_CHANGED,
        }
    ],
)
def test_other_events_notify_nothing(kind):
    payload = {"to": "COMPLETED", "stream": "system", "text": permission_needed_line("x", "y")}
    assert notices(event(kind, payload), Budget(max_tokens=1)) == []


# -- signing ------------------------------------------------------------------------------


def delivery(**changes: Any) -> Delivery:
    base = Delivery(
        id=uuid4(),
        webhook_id=uuid4(),
        event_id=42,
        kind="session.finished",
        payload={"session_id": str(SESSION), "state": "COMPLETED", "note": "é"},
        status=DeliveryStatus.PENDING,
        created_at=NOW,
        next_attempt_at=NOW,
    )
    return replace(base, **changes)


def test_the_body_is_the_same_bytes_on_every_attempt_and_says_what_happened():
    sent = delivery()
    first = body(sent)
    assert body(claimed(sent, NOW, 10)) == first
    document = json.loads(first)
    assert document == {
        "id": str(sent.id),
        "kind": "session.finished",
        "webhook_id": str(sent.webhook_id),
        "event_id": 42,
        "created_at": NOW.isoformat(),
        "data": sent.payload,
    }


def test_the_signature_is_hmac_sha256_of_the_exact_body():
    content = body(delivery())
    expected = hmac.new(b"s3cret-key-0123456", content, hashlib.sha256).hexdigest()
    assert signature("s3cret-key-0123456", content) == f"sha256={expected}"
    assert verify("s3cret-key-0123456", content, f"sha256={expected}")
    assert not verify("another-key-0123456", content, f"sha256={expected}")
    assert not verify("s3cret-key-0123456", content + b" ", f"sha256={expected}")
    assert not verify("s3cret-key-0123456", content, expected)  # the prefix is part of it


def test_headers_name_the_event_the_delivery_and_the_attempt():
    sent = delivery()
    content = body(sent)
    sent_headers = headers(sent, "k" * 20, content, 3)
    assert sent_headers[EVENT_HEADER] == "session.finished"
    assert sent_headers[DELIVERY_HEADER] == str(sent.id)
    assert sent_headers["X-Orchestrator-Attempt"] == "3"
    assert verify("k" * 20, content, sent_headers[SIGNATURE_HEADER])
    assert sent_headers["Content-Type"] == "application/json"


# -- retries ------------------------------------------------------------------------------


def test_the_backoff_doubles_up_to_its_cap():
    policy = RetryPolicy(max_attempts=10, first_delay=1.0, max_delay=20.0)
    assert policy.schedule(8) == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert policy.delay(1000) == 20.0


def test_an_attempt_is_counted_before_it_is_made_and_due_again_if_it_never_ends():
    mine = claimed(delivery(), NOW, 15)
    assert mine.attempts == 1
    assert mine.next_attempt_at == NOW + timedelta(seconds=15)
    assert mine.status == DeliveryStatus.PENDING


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_a_2xx_answer_delivers(code):
    done = after_attempt(
        claimed(delivery(), NOW, 5), RetryPolicy(3, 1.0), NOW, status_code=code, error=None
    )
    assert (done.status, done.last_status_code, done.delivered_at) == (
        DeliveryStatus.DELIVERED,
        code,
        NOW,
    )
    assert done.next_attempt_at is None


@pytest.mark.parametrize(
    ("code", "error"), [(500, None), (302, None), (404, None), (None, "refused")]
)
def test_other_answers_retry_with_backoff_until_attempts_run_out(code, error):
    policy = RetryPolicy(max_attempts=3, first_delay=2.0)
    current = delivery()
    statuses = []
    for _ in range(3):
        current = after_attempt(
            claimed(current, NOW, 5), policy, NOW, status_code=code, error=error
        )
        statuses.append((current.status, current.next_attempt_at))
    assert statuses == [
        (DeliveryStatus.PENDING, NOW + timedelta(seconds=2)),
        (DeliveryStatus.PENDING, NOW + timedelta(seconds=4)),
        (DeliveryStatus.FAILED, None),
    ]
    assert current.attempts == 3
    assert current.last_status_code == code
    assert current.last_error == (error or f"HTTP {code}")


def test_a_last_attempt_that_never_answered_is_abandoned_as_failed():
    gone = abandoned(claimed(delivery(), NOW, 5))
    assert gone.status == DeliveryStatus.FAILED
    assert gone.last_error
    assert gone.next_attempt_at is None


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "https://hooks.example.com/x?y=1", "http://[::1]:9/a"],
)
def test_http_and_https_urls_are_accepted(url):
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "example.com/hook",
        "http://",
        "http:///path",
        "http://exa mple.com/",
        "http://example.com/\n",
        "http://example.com:99999/",
        "http://example.com:port/",
        "http://user:pw@example.com/",
        "http://example.com/" + "a" * 2000,
        "http://[::1/",
        "http://bücher.example/",
        "http://example.com/\ud800",
        "http://example.com/\x00",
    ],
)
def test_other_urls_are_refused(url):
    with pytest.raises(InvalidInput):
        check_url(url)


def test_unknown_or_no_events_are_refused_naming_the_valid_ones():
    with pytest.raises(InvalidInput) as unknown:
        check_events(["session.finished", "session.exploded"])
    for kind in WebhookEvent:
        assert kind.value in unknown.value.message
    assert "session.exploded" in unknown.value.message
    with pytest.raises(InvalidInput, match="at least one"):
        check_events([])
    assert check_events(["agent.degraded", "agent.degraded"]) == {WebhookEvent.AGENT_DEGRADED}


def test_names_and_secrets_are_checked_and_a_made_secret_is_long_and_fresh():
    assert check_name("ops-alerts_1.x") == "ops-alerts_1.x"
    for bad in ("", "-x", "a b", "x" * 101):
        with pytest.raises(InvalidInput):
            check_name(bad)
    for bad in ("short", "x" * 201, "sixteen chars\nok"):
        with pytest.raises(InvalidInput):
            check_secret(bad)
    made = new_secret()
    assert made.startswith("whsec_")
    assert len(made) > 40
    assert check_secret(made) == made
    assert made != new_secret()
