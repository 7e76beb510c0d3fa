"""The webhooks page: the notifications configured, their latest deliveries, and a form
to add one. Changes go through the API (``/api/v1/webhooks``) from the page's script."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..bootstrap import Components
from ..domain.webhooks import WebhookEvent
from .rendering import page

router = APIRouter(include_in_schema=False)

DELIVERIES_SHOWN = 5


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks_page(request: Request) -> HTMLResponse:
    built: Components = request.app.state.components
    hooks = await built.webhooks.all()
    deliveries = {
        hook.id: await built.webhooks.deliveries(hook.id, limit=DELIVERIES_SHOWN) for hook in hooks
    }
    context = {
        "webhooks": hooks,
        "deliveries": deliveries,
        "event_kinds": [kind.value for kind in WebhookEvent],
        "since": await built.events.last_id(),
    }
    return page(request, "webhooks.html", context, regions={"webhooks": "webhooks_list.html"})
