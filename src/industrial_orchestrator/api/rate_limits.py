"""Per-credential rate limit on changes: a runaway script or a stolen token cannot flood
the orchestrator with sessions or commands.

Counted per operator token (the caller ``OperatorAuth`` identified), over a moving window
of one minute, in this process (each replica counts its own). Reads are not limited, nor
are agents' protocol calls (their leases already pace them). Over the limit: 429 with
``Retry-After``, the seconds until a request is allowed again.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.operator_tokens import READ_METHODS, OperatorToken
from .errors import error_json


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
        refusal = error_json(
            429,
            "rate_limited",
            f"The token {operator.name!r} made more than {self.item.amount} changes in a "
            f"minute; retry in {wait} s",
            {"limit_per_minute": self.item.amount, "retry_after_seconds": wait},
        )
        refusal.headers["Retry-After"] = str(wait)
        await refusal(scope, receive, send)
