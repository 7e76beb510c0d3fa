"""Webhooks: notifications of chosen events POSTed to the operator's URLs, signed with
HMAC-SHA256, retried with backoff, each attempt in a delivery log (docs/webhooks.md)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from ...bootstrap import Components
from ...services.webhooks import WebhookService
from ..paths import API_PREFIX
from ..schemas.common import error_responses
from ..schemas.webhooks import (
    DeliveryPage,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)

router = APIRouter(prefix=f"{API_PREFIX}/webhooks", tags=["webhooks"])

MAX_PAGE_SIZE = 200


async def webhook_service(request: Request) -> WebhookService:
    built: Components = request.app.state.components
    return built.webhooks


Webhooks = Annotated[WebhookService, Depends(webhook_service)]
WebhookId = Annotated[UUID, Path(description="The webhook's id (a UUID)")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    summary="Create a webhook",
    responses=error_responses(409, 422),
)
async def create_webhook(body: WebhookCreate, webhooks: Webhooks) -> WebhookCreated:
    """Notifications of the chosen events that happen from now on are POSTed to `url`.
    The answer holds the signing `secret` (given, or made here): it is never shown again.
    Names are unique (409)."""
    created = await webhooks.create(
        body.name,
        body.url,
        [kind.value for kind in body.events],
        secret=body.secret,
        active=body.active,
    )
    return WebhookCreated.issued(created.webhook, created.secret)


@router.get("", response_model=list[WebhookRead], summary="List webhooks")
async def list_webhooks(webhooks: Webhooks) -> list[WebhookRead]:
    """Oldest first; secrets are never shown."""
    return [WebhookRead.of(webhook) for webhook in await webhooks.all()]


@router.get(
    "/{webhook_id}",
    response_model=WebhookRead,
    summary="Get a webhook",
    responses=error_responses(404, 422),
)
async def get_webhook(webhook_id: WebhookId, webhooks: Webhooks) -> WebhookRead:
    return WebhookRead.of(await webhooks.get(webhook_id))


@router.patch(
    "/{webhook_id}",
    response_model=WebhookRead,
    summary="Pause or resume a webhook",
    responses=error_responses(404, 422),
)
async def update_webhook(
    webhook_id: WebhookId, body: WebhookUpdate, webhooks: Webhooks
) -> WebhookRead:
    """A paused webhook is sent nothing; resumed, it hears of events from then on (not of
    those that happened while it was paused)."""
    return WebhookRead.of(await webhooks.set_active(webhook_id, body.active))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a webhook",
    responses=error_responses(404, 422),
)
async def delete_webhook(webhook_id: WebhookId, webhooks: Webhooks) -> Response:
    """The webhook and its delivery log; nothing more is sent to it."""
    await webhooks.delete(webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    summary="The webhook's delivery log",
    responses=error_responses(404, 422),
)
async def list_deliveries(
    webhook_id: WebhookId,
    webhooks: Webhooks,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page")] = 50,
) -> DeliveryPage:
    """Newest first: each delivery's status (pending, delivered, failed), attempts made,
    the receiver's last status code or error, and when it is tried next."""
    items, total = await webhooks.deliveries(
        webhook_id, offset=(page - 1) * page_size, limit=page_size
    )
    return DeliveryPage(
        items=[DeliveryRead.of(d) for d in items], total=total, page=page, page_size=page_size
    )


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
    summary="Send a test notification",
    responses=error_responses(404, 409, 422),
)
async def test_webhook(webhook_id: WebhookId, webhooks: Webhooks) -> DeliveryRead:
    """Queue a `webhook.test` delivery, sent (signed, retried) like any other within a
    few seconds; follow it in the delivery log. 409 for a paused webhook."""
    return DeliveryRead.of(await webhooks.send_test(webhook_id))
