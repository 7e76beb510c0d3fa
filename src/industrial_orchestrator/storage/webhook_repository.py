"""Webhooks and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.webhooks import Delivery, DeliveryStatus, Webhook, WebhookEvent
from ..services.ports import DuplicateKeyError
from .rows import utc
from .tables import webhook_deliveries, webhooks
from .written_constants import constant

_KINDS = frozenset(kind.value for kind in WebhookEvent)


class SqlWebhookRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._db = connection

    async def add(self, webhook: Webhook) -> None:
        try:
            await self._db.execute(
                sa.insert(webhooks).values(
                    id=webhook.id,
                    name=webhook.name,
                    url=webhook.url,
                    secret=webhook.secret,
                    events=sorted(kind.value for kind in webhook.events),
                    active=webhook.active,
                    last_event_id=webhook.last_event_id,
                    created_at=webhook.created_at,
                )
            )
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    async def get(self, webhook_id: UUID) -> Webhook | None:
        result = await self._db.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id))
        row = result.mappings().first()
        return _webhook(row) if row else None

    async def all(self, *, active_only: bool = False) -> list[Webhook]:
        query = sa.select(webhooks).order_by(webhooks.c.created_at, webhooks.c.name)
        if active_only:
            query = query.where(webhooks.c.active.is_(True))
        result = await self._db.execute(query)
        return [_webhook(row) for row in result.mappings()]

    async def delete(self, webhook_id: UUID) -> bool:
        result = await self._db.execute(sa.delete(webhooks).where(webhooks.c.id == webhook_id))
        return result.rowcount == 1

    async def set_active(self, webhook_id: UUID, active: bool, last_event_id: int | None) -> bool:
        values: dict[str, Any] = {"active": active}
        if last_event_id is not None:
            values["last_event_id"] = last_event_id
        result = await self._db.execute(
            sa.update(webhooks).where(webhooks.c.id == webhook_id).values(**values)
        )
        return result.rowcount == 1

    async def advance(self, webhook_id: UUID, last_event_id: int) -> None:
        """Move the webhook's position in the log forward (never back)."""
        await self._db.execute(
            sa.update(webhooks)
            .where(webhooks.c.id == webhook_id, webhooks.c.last_event_id < last_event_id)
            .values(last_event_id=last_event_id)
        )

    async def queue(self, delivery: Delivery) -> bool:
        """Insert the delivery unless its webhook has one for its event already."""
        insert = (
            postgresql.insert(webhook_deliveries)
            if self._db.dialect.name == "postgresql"
            else sqlite.insert(webhook_deliveries)
        )
        statement = (
            insert.values(_delivery_values(delivery))
            .on_conflict_do_nothing(index_elements=["webhook_id", "event_id"])
            .returning(webhook_deliveries.c.id)
        )
        return (await self._db.scalar(statement)) is not None

    async def delivery(self, delivery_id: UUID) -> Delivery | None:
        result = await self._db.execute(
            sa.select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
        )
        row = result.mappings().first()
        return _delivery(row) if row else None

    async def deliveries(
        self, webhook_id: UUID, *, offset: int, limit: int
    ) -> tuple[list[Delivery], int]:
        condition = webhook_deliveries.c.webhook_id == webhook_id
        total = await self._db.scalar(
            sa.select(sa.func.count()).select_from(webhook_deliveries).where(condition)
        )
        result = await self._db.execute(
            sa.select(webhook_deliveries)
            .where(condition)
            .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id)
            .offset(offset)
            .limit(limit)
        )
        return [_delivery(row) for row in result.mappings()], int(total or 0)

    async def due(self, now: datetime, *, limit: int) -> list[tuple[Delivery, Webhook]]:
        """Pending deliveries of active webhooks whose next attempt is due, oldest first."""
        result = await self._db.execute(
            sa.select(webhook_deliveries, webhooks)
            .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
            .where(
                webhook_deliveries.c.status == constant(DeliveryStatus.PENDING.value),
                webhook_deliveries.c.next_attempt_at <= now,
                webhooks.c.active.is_(True),
            )
            .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.created_at)
            .limit(limit)
        )
        return [
            (
                _delivery(_columns(row._mapping, webhook_deliveries)),
                _webhook(_columns(row._mapping, webhooks)),
            )
            for row in result.all()
        ]

    async def save_delivery(self, before: Delivery, after: Delivery) -> bool:
        """Guarded write: False when the row is no longer at ``before``'s status and
        attempt count (another sender moved it)."""
        result = await self._db.execute(
            sa.update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == before.id,
                webhook_deliveries.c.status == before.status.value,
                webhook_deliveries.c.attempts == before.attempts,
            )
            .values(
                status=after.status.value,
                attempts=after.attempts,
                last_status_code=after.last_status_code,
                last_error=after.last_error,
                next_attempt_at=after.next_attempt_at,
                delivered_at=after.delivered_at,
            )
        )
        return result.rowcount == 1


def _columns(fields: Any, table: sa.Table) -> dict[str, Any]:
    return {column.name: fields[column] for column in table.columns}


def _delivery_values(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "kind": delivery.kind,
        "payload": delivery.payload,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": delivery.next_attempt_at,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
    }


def _webhook(row: RowMapping | dict[str, Any]) -> Webhook:
    created = utc(row["created_at"])
    assert created is not None
    return Webhook(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        secret=row["secret"],
        events=frozenset(WebhookEvent(kind) for kind in row["events"] or () if kind in _KINDS),
        active=bool(row["active"]),
        created_at=created,
        last_event_id=int(row["last_event_id"]),
    )


def _delivery(row: RowMapping | dict[str, Any]) -> Delivery:
    created = utc(row["created_at"])
    assert created is not None
    return Delivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        event_id=row["event_id"],
        kind=row["kind"],
        payload=dict(row["payload"] or {}),
        status=DeliveryStatus(row["status"]),
        created_at=created,
        attempts=int(row["attempts"]),
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        next_attempt_at=utc(row["next_attempt_at"]),
        delivered_at=utc(row["delivered_at"]),
    )
