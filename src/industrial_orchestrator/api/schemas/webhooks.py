"""Webhook resource: configuration (the secret shown once) and the delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from ...domain.webhooks import (
    MAX_SECRET_LENGTH,
    MAX_URL_LENGTH,
    MIN_SECRET_LENGTH,
    Delivery,
    DeliveryStatus,
    Webhook,
    WebhookEvent,
)
from .common import StrictModel


class WebhookCreate(StrictModel):
    name: str = Field(
        min_length=1,
        max_length=100,
        description="Unique; letters, digits, '.', '_' or '-', starting with a letter or digit",
    )
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="http:// or https:// URL the notifications are POSTed to",
        examples=["https://hooks.example.com/orchestrator"],
    )
    events: list[WebhookEvent] = Field(
        min_length=1, max_length=len(WebhookEvent), description="The notifications wanted"
    )
    secret: str | None = Field(
        None,
        min_length=MIN_SECRET_LENGTH,
        max_length=MAX_SECRET_LENGTH,
        description="Key of the HMAC-SHA256 signature; omitted: a random one is made. "
        "Returned in this response only",
    )
    active: bool = Field(True, description="Send notifications (false: configured, paused)")


class WebhookUpdate(StrictModel):
    active: bool = Field(
        description="Pause (false) or resume (true); a resumed webhook hears of events from then on"
    )


class WebhookRead(BaseModel):
    id: UUID
    name: str
    url: str
    events: list[WebhookEvent]
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, webhook: Webhook) -> WebhookRead:
        return cls(
            id=webhook.id,
            name=webhook.name,
            url=webhook.url,
            events=sorted(webhook.events),
            active=webhook.active,
            created_at=webhook.created_at,
        )


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="Signs every body (X-Orchestrator-Signature); never shown again"
    )

    @classmethod
    def issued(cls, webhook: Webhook, secret: str) -> WebhookCreated:
        return cls(**WebhookRead.of(webhook).model_dump(), secret=secret)


class DeliveryRead(BaseModel):
    id: UUID = Field(description="Sent as X-Orchestrator-Delivery: receivers dedupe on it")
    webhook_id: UUID
    event_id: int | None = Field(description="The event log's id; null for a test delivery")
    kind: str = Field(description="A webhook event, or webhook.test")
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None = Field(description="The receiver's last HTTP status")
    last_error: str | None = Field(description="Why the last attempt failed")
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The body's `data`")

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryRead:
        return cls(
            id=delivery.id,
            webhook_id=delivery.webhook_id,
            event_id=delivery.event_id,
            kind=delivery.kind,
            status=delivery.status,
            attempts=delivery.attempts,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            next_attempt_at=delivery.next_attempt_at,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
            payload=delivery.payload,
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    total: int
    page: int
    page_size: int
