"""The heartbeat (``POST .../{agent_id}/heartbeat``), sent from a task of its own so a
long command never delays it, and the tasks it holds.

Every beat says how loaded the agent is and which tasks it is working on: only their
leases are renewed. ``busy`` while every slot runs a command, ``healthy`` otherwise; the
server refuses work to a ``busy`` agent, so a slot that frees up beats ``healthy`` again
before it pulls. The answer carries a fresh token (adopted at once) and the tasks the
orchestrator took back (``abort``), whose commands are then ended.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx

from ..errors import describe
from .console import Warn
from .membership import Membership
from .protocol import EAP, error_message

BEAT_TRIES = 3
BEAT_RETRY_SECONDS = 0.05


class Heartbeat:
    """The agent's beats, and the tasks they renew: ``hold`` one while its command runs,
    ``release`` it once reported."""

    def __init__(self, membership: Membership, concurrency: int, warn: Warn) -> None:
        self._membership = membership
        self._concurrency = concurrency
        self._warn = warn
        self.working_on: set[str] = set()
        # Set when the orchestrator says a task is no longer ours (heartbeat `abort`).
        self.aborted: dict[str, asyncio.Event] = {}
        self.reported_busy = False
        self._beat_lock = asyncio.Lock()

    def hold(self, task_id: str) -> asyncio.Event:
        """Renew ``task_id``'s lease from now on; the event is set if it is taken back."""
        self.working_on.add(task_id)
        self.aborted[task_id] = asyncio.Event()
        return self.aborted[task_id]

    def release(self, task_id: str) -> None:
        self.working_on.discard(task_id)
        self.aborted.pop(task_id, None)

    async def run(self) -> None:
        """Beat at the interval the orchestrator asks for, until cancelled."""
        while True:
            await asyncio.sleep(self._membership.heartbeat_seconds)
            await self.beat()

    async def beat(self) -> None:
        """One heartbeat (retried on a concurrent change of the agent's record); adopts
        the fresh token and interval. Failures are reported; the next beat tries again."""
        membership = self._membership
        async with self._beat_lock:
            running = len(self.working_on)
            status = "busy" if running >= self._concurrency else "healthy"
            body = {
                "status": status,
                "current_load": running / self._concurrency,
                "tasks_in_progress": running,
                "timestamp": datetime.now(UTC).isoformat(),
                # Only these leases are renewed: one this worker lost track of (a
                # long-poll answered as it gave up) runs out and goes back to the queue.
                "task_ids": sorted(self.working_on),
            }
            for _ in range(BEAT_TRIES):
                sent_token = membership.token
                try:
                    response = await membership.http.post(
                        f"{EAP}/{membership.agent_id}/heartbeat",
                        json=body,
                        headers=membership.auth(),
                    )
                except httpx.TransportError as exc:
                    self._warn(f"heartbeat failed: {describe(exc)}")
                    return
                if response.status_code == 200:
                    ack = response.json()
                    membership.renew(ack)
                    for task_id in ack.get("abort", []):
                        if (aborted := self.aborted.get(str(task_id))) is not None:
                            aborted.set()
                    self.reported_busy = status == "busy"
                    return
                if response.status_code == 401:
                    if await membership.rejoin(response, sent_token):
                        continue
                    return
                if response.status_code != 409:
                    break
                # A result of ours changed the agent's record meanwhile: beat again.
                await asyncio.sleep(BEAT_RETRY_SECONDS)
            self._warn(f"heartbeat refused: {error_message(response)}")
