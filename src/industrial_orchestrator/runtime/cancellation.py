"""Cancellation that a library swallowed.

A background loop is stopped by cancelling its task. A cancellation that lands inside a
database or HTTP call can come out of it as an ordinary error (a connection torn down
mid-query), or be caught by the call's own error handling; the loop then logs it and goes
round again, and the task never ends: the shutdown that cancelled it waits for it, or a
test's event loop hangs at its close. The request is still on the task
(``Task.cancelling``), so the loop checks for it each time round.

Stopping a loop politely (``finish``) gives it a while to end by itself, then cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

STOP_SECONDS = 10.0
"""How long a loop asked to stop may take to end by itself before it is cancelled."""


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop."""
    task = asyncio.current_task()  # only ever called from a task
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def finish(tasks: Sequence[asyncio.Task[None]], within: float = STOP_SECONDS) -> None:
    """Wait for ``tasks`` to end by themselves, ``within`` seconds at most, then cancel
    those still running and wait for them."""
    if not tasks:
        return
    _done, late = await asyncio.wait(tasks, timeout=within)
    for task in late:
        task.cancel()
    for task in late:
        with contextlib.suppress(asyncio.CancelledError):
            await task
