"""The webhook dispatcher: a background loop that queues notifications from the event
log and sends the deliveries that are due (``WebhookService``), over HTTP.

Every replica runs one; it wakes when the log has news (the event bus) and at least every
WEBHOOK_POLL_SECONDS (retries fall due with time, not with news). While no webhook is
active (the usual case) news costs nothing: the database is looked at again once
WEBHOOK_POLL_SECONDS have passed since the last look (a webhook another replica creates
is noticed then; one created here, at once). A shared lock lets one
replica at a time do a round; it only saves duplicated work, since queueing is idempotent
(UNIQUE per webhook and event) and each attempt is claimed by a guarded update, so when
the lock service is unreachable the round runs anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping

import httpx
import structlog

from ..coordination.event_bus import EventBus
from ..coordination.locks import Lock, LockUnavailable
from ..domain.storable_text import storable
from ..services.event_feed import Doorbell
from ..services.webhooks import SendResult, WebhookService
from .cancellation import stop_if_cancelled

log = structlog.get_logger("industrial_orchestrator.runtime.webhooks")

LOCK_NAME = "webhooks"


class HttpWebhookSender:
    """POSTs with httpx: one timeout for the whole exchange, no redirects followed (a
    3xx is a failure like any non-2xx), and the receiver's answer body is never read."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds), follow_redirects=False
        )
        self._timeout = timeout_seconds

    async def send(self, url: str, content: bytes, headers: Mapping[str, str]) -> SendResult:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.stream(
                    "POST", url, content=content, headers=dict(headers)
                ) as response:
                    return SendResult(status_code=response.status_code)
        except TimeoutError:
            return SendResult(error=f"no answer within {self._timeout:g} s")
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError, OSError) as exc:
            # Stored as the delivery's last error; the text may quote the receiver.
            return SendResult(error=storable(f"{type(exc).__name__}: {exc}"[:500]))

    async def close(self) -> None:
        await self._client.aclose()


STOP_SECONDS = 0.5


class WebhookDispatcher:
    def __init__(
        self,
        webhooks: WebhookService,
        bus: EventBus,
        lock: Lock,
        sender: HttpWebhookSender,
        *,
        poll_seconds: float,
    ) -> None:
        self._webhooks = webhooks
        self._bus = bus
        self._lock = lock
        self._sender = sender
        self._poll = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._exit = contextlib.AsyncExitStack()
        self._looked_at = -math.inf

    async def start(self) -> None:
        # Subscribed here, not inside the task: leaving the subscription from a cancelled
        # task left Redis's connection waiting out its socket timeout (30 s per shutdown).
        self._exit = contextlib.AsyncExitStack()
        doorbell = await self._exit.enter_async_context(self._bus.subscribe())
        self._task = asyncio.create_task(self._run(doorbell), name="webhook-dispatcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # A round cancelled inside a database call may take the pool's checkout
            # timeout to notice; shutting down does not wait for that.
            _, pending = await asyncio.wait({self._task}, timeout=STOP_SECONDS)
            if pending:
                log.warning("webhook_round_still_stopping", seconds=STOP_SECONDS)
            self._task = None
        try:
            await self._exit.aclose()
        finally:
            await self._sender.close()

    async def run_once(self) -> bool:
        """One round: queue what the log has new, then send what is due. False when
        another replica holds the round's lock."""
        now = time.monotonic()
        if self._webhooks.none_active and now - self._looked_at < self._poll:
            return True  # no webhook, so nothing to queue or send (looked just now)
        self._looked_at = now
        ttl = self._webhooks.policy.timeout_seconds * 2 + self._poll * 3
        token: str | None = None
        try:
            token = await self._lock.acquire(LOCK_NAME, ttl)
            if token is None:
                return False
        except LockUnavailable:
            log.warning("webhook_lock_unavailable")
        try:
            await self._webhooks.queue_new_events()
            if not self._webhooks.none_active:  # only active webhooks have deliveries due
                await self._webhooks.send_due(self._sender)
            return True
        finally:
            if token is not None:
                with contextlib.suppress(LockUnavailable):
                    await self._lock.release(LOCK_NAME, token)

    async def _run(self, doorbell: Doorbell) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next round tries again; never let the loop die
                stop_if_cancelled()
                log.exception("webhook_round_failed")
            stop_if_cancelled()
            await doorbell.wait(self._poll)
