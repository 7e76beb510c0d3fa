"""Webhooks: configured by the operator, fed from the event log, sent with retries.

Queueing and sending are separate steps (ARCHITECTURE.md §5.6):

1. ``queue_new_events`` reads the log after each active webhook's position, turns events
   into notices (``domain.webhooks.notices``) and, in one transaction, inserts a
   delivery per chosen notice and moves the positions on. UNIQUE(webhook, event) makes a
   second queueing of the same event (another replica, a restart) a no-op.
2. ``send_due`` sends the deliveries that are due. Each attempt is recorded (counted, and
   due again after the timeout) and committed *before* the request goes out, and its
   answer after. A sender that dies mid-way leaves the delivery due again: delivery is
   at least once, and receivers dedupe on the delivery id (``X-Orchestrator-Delivery``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID, uuid4

import structlog

from ..domain.errors import Conflict, NotFound
from ..domain.events import Event
from ..domain.webhooks import (
    TEST_KIND,
    Budget,
    Delivery,
    DeliveryStatus,
    RetryPolicy,
    Webhook,
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
)
from .ports import Clock, DuplicateKeyError, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.webhooks")

PAGE = 500
# Past the request's own timeout before another sender may take an unanswered attempt.
CLAIM_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class SendResult:
    status_code: int | None = None
    """The receiver's HTTP status; None when no answer came."""
    error: str | None = None
    """Why no answer came (connection refused, timeout...)."""


class WebhookSender(Protocol):
    """Posts one body to one URL; never raises for the receiver's failures."""

    async def send(self, url: str, content: bytes, headers: Mapping[str, str]) -> SendResult: ...


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    webhook: Webhook
    secret: str
    """Shown this once: the API never returns it again."""


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    retry: RetryPolicy
    timeout_seconds: float
    batch: int = 20
    """Deliveries sent at once per round."""


class WebhookService:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock, policy: WebhookPolicy) -> None:
        self._uow = uow
        self._clock = clock
        self.policy = policy
        self._none_active = False
        self._activations = 0

    @property
    def none_active(self) -> bool:
        """Whether the last look at the log (``queue_new_events``) found no active webhook,
        and none was created or resumed through this service since: a round then has
        nothing to queue or send. A webhook another replica creates is seen at the next
        look."""
        return self._none_active

    def _activated(self) -> None:
        self._activations += 1
        self._none_active = False

    # -- configuration ----------------------------------------------------------------------

    async def create(
        self,
        name: str,
        url: str,
        events: Sequence[str],
        *,
        secret: str | None = None,
        active: bool = True,
    ) -> CreatedWebhook:
        """A webhook notified of the chosen events that happen from now on."""
        check_name(name)
        check_url(url)
        kinds = check_events(events)
        key = check_secret(secret) if secret is not None else new_secret()
        async with self._uow() as uow:
            webhook = Webhook(
                id=uuid4(),
                name=name,
                url=url,
                secret=key,
                events=kinds,
                active=active,
                created_at=self._clock(),
                last_event_id=await uow.events.last_id(),
            )
            try:
                await uow.webhooks.add(webhook)
            except DuplicateKeyError:
                raise Conflict(f"a webhook named {name!r} exists already", {"name": name}) from None
            await uow.commit()
        if active:
            self._activated()
        log.info(
            "webhook_created",
            webhook_id=str(webhook.id),
            name=name,
            events=sorted(kinds),
            active=active,
        )
        return CreatedWebhook(webhook, key)

    async def all(self) -> list[Webhook]:
        async with self._uow.reader() as uow:
            return await uow.webhooks.all()

    async def get(self, webhook_id: UUID) -> Webhook:
        async with self._uow.reader() as uow:
            return await _webhook(uow, webhook_id)

    async def delete(self, webhook_id: UUID) -> None:
        """The webhook and its delivery log; nothing more is sent to it."""
        async with self._uow() as uow:
            if not await uow.webhooks.delete(webhook_id):
                raise _missing(webhook_id)
            await uow.commit()
        log.info("webhook_deleted", webhook_id=str(webhook_id))

    async def set_active(self, webhook_id: UUID, active: bool) -> Webhook:
        """Pause or resume it. A resumed webhook hears of events from now on, not of
        those that happened while it was off (its queued deliveries are still sent)."""
        async with self._uow() as uow:
            webhook = await _webhook(uow, webhook_id)
            if webhook.active != active:
                position = await uow.events.last_id() if active else None
                await uow.webhooks.set_active(webhook_id, active, position)
                await uow.commit()
                if active:
                    self._activated()
        log.info("webhook_set_active", webhook_id=str(webhook_id), active=active)
        return await self.get(webhook_id)

    async def deliveries(
        self, webhook_id: UUID, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[Delivery], int]:
        """The webhook's delivery log, newest first, with the total count."""
        async with self._uow.reader() as uow:
            await _webhook(uow, webhook_id)
            return await uow.webhooks.deliveries(webhook_id, offset=offset, limit=limit)

    async def send_test(self, webhook_id: UUID) -> Delivery:
        """Queue a ``webhook.test`` delivery (sent like any other, within a poll)."""
        now = self._clock()
        async with self._uow() as uow:
            webhook = await _webhook(uow, webhook_id)
            if not webhook.active:
                raise Conflict(
                    f"webhook {webhook.name!r} is inactive; activate it to test it",
                    {"webhook_id": str(webhook_id)},
                )
            delivery = Delivery(
                id=uuid4(),
                webhook_id=webhook_id,
                event_id=None,
                kind=TEST_KIND,
                payload={"message": "Test delivery from Industrial Orchestrator"},
                status=DeliveryStatus.PENDING,
                created_at=now,
                next_attempt_at=now,
            )
            await uow.webhooks.queue(delivery)
            await uow.commit()
        return delivery

    # -- queueing ---------------------------------------------------------------------------

    async def queue_new_events(self) -> int:
        """Queue a delivery per chosen notice of every event after the active webhooks'
        positions; returns how many were queued (not counting ones queued before)."""
        queued = 0
        while True:
            # A read first: most rounds find nothing new, and need not queue for the writer.
            activations = self._activations
            async with self._uow.reader() as uow:
                hooks = await uow.webhooks.all(active_only=True)
                # Unless one was activated here during the read (it may not show in it).
                self._none_active = not hooks and activations == self._activations
                if not hooks:
                    return queued
                start = min(hook.last_event_id for hook in hooks)
                if not await uow.events.after(start, limit=1):
                    return queued
            async with self._uow() as uow:
                hooks = await uow.webhooks.all(active_only=True)
                if not hooks:
                    return queued
                start = min(hook.last_event_id for hook in hooks)
                page = await uow.events.after(start, limit=PAGE)
                if not page:
                    return queued
                queued += await self._queue_page(uow, hooks, page)
                for hook in hooks:
                    await uow.webhooks.advance(hook.id, page[-1].id)
                await uow.commit()
            if len(page) < PAGE:
                return queued

    async def _queue_page(
        self, uow: UnitOfWork, hooks: Sequence[Webhook], page: Sequence[Event]
    ) -> int:
        now = self._clock()
        budgets: dict[UUID, Budget | None] = {}
        want_budgets = any(hook.wants(WebhookEvent.BUDGET_WARNING) for hook in hooks)
        queued = 0
        for event in page:
            budget = None
            if want_budgets and needs_budget(event) and event.session_id is not None:
                if event.session_id not in budgets:
                    session = await uow.sessions.get(event.session_id)
                    budgets[event.session_id] = (
                        Budget(session.options.max_tokens, session.options.max_cost_usd)
                        if session is not None
                        else None
                    )
                budget = budgets[event.session_id]
            for notice in notices(event, budget):
                for hook in hooks:
                    if event.id <= hook.last_event_id or not hook.wants(notice.kind):
                        continue
                    delivery = Delivery(
                        id=uuid4(),
                        webhook_id=hook.id,
                        event_id=event.id,
                        kind=notice.kind.value,
                        payload={**notice.data, "occurred_at": event.at.isoformat()},
                        status=DeliveryStatus.PENDING,
                        created_at=now,
                        next_attempt_at=now,
                    )
                    if await uow.webhooks.queue(delivery):
                        queued += 1
        return queued

    # -- sending ----------------------------------------------------------------------------

    async def send_due(self, sender: WebhookSender) -> int:
        """Make one attempt at each due delivery (up to the policy's batch, at once);
        returns how many attempts were made."""
        async with self._uow.reader() as uow:
            due = await uow.webhooks.due(self._clock(), limit=self.policy.batch)
        made = await asyncio.gather(*(self._attempt(sender, d, hook) for d, hook in due))
        return sum(made)

    async def _attempt(self, sender: WebhookSender, delivery: Delivery, hook: Webhook) -> int:
        if delivery.attempts >= self.policy.retry.max_attempts:
            # Its last attempt was claimed but never answered (the sender stopped).
            async with self._uow() as uow:
                if await uow.webhooks.save_delivery(delivery, abandoned(delivery)):
                    await uow.commit()
            return 0
        mine = claimed(delivery, self._clock(), self.policy.timeout_seconds + CLAIM_GRACE_SECONDS)
        async with self._uow() as uow:
            if not await uow.webhooks.save_delivery(delivery, mine):
                return 0  # another sender took it
            await uow.commit()
        content = body(mine)
        result = await sender.send(
            hook.url, content, headers(mine, hook.secret, content, mine.attempts)
        )
        after = after_attempt(
            mine,
            self.policy.retry,
            self._clock(),
            status_code=result.status_code,
            error=result.error,
        )
        async with self._uow() as uow:
            recorded = await uow.webhooks.save_delivery(mine, after)
            await uow.commit()
        log.info(
            "webhook_attempt",
            webhook_id=str(hook.id),
            webhook=hook.name,
            delivery_id=str(delivery.id),
            kind=delivery.kind,
            attempt=mine.attempts,
            status_code=result.status_code,
            error=result.error,
            outcome=after.status.value,
            recorded=recorded,
        )
        return 1


async def _webhook(uow: UnitOfWork, webhook_id: UUID) -> Webhook:
    webhook = await uow.webhooks.get(webhook_id)
    if webhook is None:
        raise _missing(webhook_id)
    return webhook


def _missing(webhook_id: UUID) -> NotFound:
    return NotFound(f"Webhook {webhook_id} does not exist", {"webhook_id": str(webhook_id)})
