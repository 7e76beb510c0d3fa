"""Webhooks and their deliveries (``storage/webhook_repository.py`` in memory). Deleting a
webhook deletes its deliveries, as the foreign key's cascade does."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID

from ...domain.webhooks import Delivery, DeliveryStatus, Webhook
from ...services.ports import DuplicateKeyError
from .store import IntegrityViolation, Transaction, json_copy

WEBHOOKS = "webhooks"
DELIVERIES = "webhook_deliveries"


def _delivery(delivery: Delivery) -> Delivery:
    return replace(delivery, payload=json_copy(delivery.payload))


class MemoryWebhookRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def _webhook(self, webhook_id: UUID) -> Webhook | None:
        found: Webhook | None = self._tx.get(WEBHOOKS, webhook_id)
        return found

    async def add(self, webhook: Webhook) -> None:
        taken = any(other.name == webhook.name for other in self._tx.rows(WEBHOOKS))
        if taken or self._webhook(webhook.id) is not None:
            raise DuplicateKeyError(f"webhook {webhook.id} or name {webhook.name!r} exists")
        self._tx.put(WEBHOOKS, webhook.id, replace(webhook, events=frozenset(webhook.events)))

    async def get(self, webhook_id: UUID) -> Webhook | None:
        return self._webhook(webhook_id)

    async def all(self, *, active_only: bool = False) -> list[Webhook]:
        found: list[Webhook] = self._tx.select(
            WEBHOOKS, lambda webhook: webhook.active or not active_only
        )
        return sorted(found, key=lambda webhook: (webhook.created_at, webhook.name))

    async def delete(self, webhook_id: UUID) -> bool:
        if not self._tx.delete(WEBHOOKS, webhook_id):
            return False
        for delivery in self._tx.select(DELIVERIES, lambda d: d.webhook_id == webhook_id):
            self._tx.delete(DELIVERIES, delivery.id)
        return True

    async def set_active(self, webhook_id: UUID, active: bool, last_event_id: int | None) -> bool:
        webhook = self._webhook(webhook_id)
        if webhook is None:
            return False
        moved = webhook.last_event_id if last_event_id is None else last_event_id
        self._tx.put(WEBHOOKS, webhook_id, replace(webhook, active=active, last_event_id=moved))
        return True

    async def advance(self, webhook_id: UUID, last_event_id: int) -> None:
        webhook = self._webhook(webhook_id)
        if webhook is not None and webhook.last_event_id < last_event_id:
            self._tx.put(WEBHOOKS, webhook_id, replace(webhook, last_event_id=last_event_id))

    async def queue(self, delivery: Delivery) -> bool:
        # A delivery of no event (a test one) never conflicts: NULLs are distinct in a
        # unique constraint, in both databases.
        if delivery.event_id is not None and any(
            other.webhook_id == delivery.webhook_id and other.event_id == delivery.event_id
            for other in self._tx.rows(DELIVERIES)
        ):
            return False
        if self._tx.get(DELIVERIES, delivery.id) is not None:
            raise IntegrityViolation(f"delivery {delivery.id} exists")
        if self._webhook(delivery.webhook_id) is None:
            raise IntegrityViolation(f"delivery to unknown webhook {delivery.webhook_id}")
        self._tx.put(DELIVERIES, delivery.id, _delivery(delivery))
        return True

    async def delivery(self, delivery_id: UUID) -> Delivery | None:
        found: Delivery | None = self._tx.get(DELIVERIES, delivery_id)
        return _delivery(found) if found else None

    async def deliveries(
        self, webhook_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Delivery], int]:
        found: list[Delivery] = self._tx.select(DELIVERIES, lambda d: d.webhook_id == webhook_id)
        # created_at descending, then id ascending.
        found.sort(key=lambda delivery: delivery.id)
        found.sort(key=lambda delivery: delivery.created_at, reverse=True)
        return [_delivery(each) for each in found[offset : offset + limit]], len(found)

    async def due(self, now: datetime, *, limit: int) -> list[tuple[Delivery, Webhook]]:
        found: list[tuple[Delivery, Webhook]] = []
        for delivery in self._tx.rows(DELIVERIES):
            webhook = self._webhook(delivery.webhook_id)
            if (
                webhook is not None
                and webhook.active
                and delivery.status is DeliveryStatus.PENDING
                and delivery.next_attempt_at is not None
                and delivery.next_attempt_at <= now
            ):
                found.append((delivery, webhook))
        # The SQL one orders by next attempt, then creation; ties here by id.
        found.sort(key=lambda pair: (pair[0].next_attempt_at, pair[0].created_at, pair[0].id))
        return [(_delivery(delivery), webhook) for delivery, webhook in found[:limit]]

    async def save_delivery(self, before: Delivery, after: Delivery) -> bool:
        current: Delivery | None = self._tx.get(DELIVERIES, before.id)
        if current is None or (current.status, current.attempts) != (
            before.status,
            before.attempts,
        ):
            return False
        saved = replace(
            current,
            status=after.status,
            attempts=after.attempts,
            last_status_code=after.last_status_code,
            last_error=after.last_error,
            next_attempt_at=after.next_attempt_at,
            delivered_at=after.delivered_at,
        )
        self._tx.put(DELIVERIES, before.id, saved)
        return True
