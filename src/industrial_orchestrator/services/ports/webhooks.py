"""Webhooks and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from ...domain.webhooks import Delivery, Webhook


class WebhookRepository(Protocol):
    async def add(self, webhook: Webhook) -> None:
        """Raises ``DuplicateKeyError`` when the name is taken."""

    async def get(self, webhook_id: UUID) -> Webhook | None: ...

    async def all(self, *, active_only: bool = False) -> list[Webhook]:
        """Oldest first."""

    async def delete(self, webhook_id: UUID) -> bool:
        """Delete the webhook and its deliveries; False when there is none."""

    async def set_active(self, webhook_id: UUID, active: bool, last_event_id: int | None) -> bool:
        """Turn it on or off (moving its log position to ``last_event_id`` if given)."""

    async def advance(self, webhook_id: UUID, last_event_id: int) -> None:
        """Move its log position forward to ``last_event_id`` (never back)."""

    async def queue(self, delivery: Delivery) -> bool:
        """Insert; False when the webhook has a delivery for that event already."""

    async def delivery(self, delivery_id: UUID) -> Delivery | None: ...

    async def deliveries(
        self, webhook_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Delivery], int]:
        """Newest first, with the total count."""

    async def due(self, now: datetime, *, limit: int) -> list[tuple[Delivery, Webhook]]:
        """Pending deliveries of active webhooks due at ``now``, oldest first."""

    async def save_delivery(self, before: Delivery, after: Delivery) -> bool:
        """Guarded write: False when the row is no longer at ``before``'s status and
        attempt count."""
