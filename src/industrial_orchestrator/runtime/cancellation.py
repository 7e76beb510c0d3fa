"""Cancellation that a library swallowed.

A background loop is stopped by cancelling its task. A cancellation that lands inside a
database or HTTP call can come out of it as an ordinary error (a connection torn down
mid-query), or be caught by the call's own error handling; the loop then logs it and goes
round again, and the task never ends: the shutdown that cancelled it waits for it, or a
test's event loop hangs at its close. The request is still on the task
(``Task.cancelling``), so the loop checks for it each time round.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop."""
    task = asyncio.current_task()  # only ever called from a task
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
