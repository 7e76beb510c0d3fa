"""Per-credential rate limit on changes: a runaway script or a stolen token cannot flood
the orchestrator with sessions or commands.

Counted per operator token (the caller ``OperatorAuth`` identified), over a moving window
of one minute, in this process (each replica counts its own). Reads are not limited, nor
are agents' protocol calls (their leases already pace them). Over the limit: 429 with
``Retry-After``, the seconds until a request is allowed again.
"""

from __future__ import annotations

import json
import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.operator_tokens import READ_METHODS, OperatorToken


class RateLimit:
    def __init__(self, app: ASGIApp, *, per_minute: int) -> None:
        self.app = app
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operator: OperatorToken | None = (scope.get("state") or {}).get("operator")
        if (
            self.item is None
            or scope["type"] != "http"
            or operator is None
            or scope["method"] in READ_METHODS
        ):
            await self.app(scope, receive, send)
            return
        key = str(operator.id)
        if await self.limiter.hit(self.item, key):
            await self.app(scope, receive, send)
            return
        stats = await self.limiter.get_window_stats(self.item, key)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        body = json.dumps(
            {
                "error": "rate_limited",
                "message": f"The token {operator.name!r} made more than "
                f"{self.item.amount} changes in a minute; retry in {wait} s",
                "details": {"limit_per_minute": self.item.amount, "retry_after_seconds": wait},
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(wait).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
