"""The loop guard on a task's turn (``domain.tasks.loop_guard`` decides, this acts): the files
are snapshotted when the attempt starts and fingerprinted at the end of every step, for
the guard to see a stall; when the guard trips and the turn is aborted, the files changed
since the snapshot are put back once OpenCode has gone idle, and the terminal says so."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog

from ...domain.errors import WorkspaceUnusable
from ...domain.events import LogStream
from ...domain.tasks.loop_guard import GuardPolicy, LoopGuard, LoopStop
from ..base import TreeSnapshots
from .client import OpenCodeClient, OpenCodeError
from .turn import Turn

log = structlog.get_logger("industrial_orchestrator.executors.opencode")

# How long an aborted turn is given to go idle before its files are rolled back (25 x 0.2 s).
_IDLE_LOOKS = 25
_IDLE_PAUSE = 0.2
_SHOWN_ROLLED_BACK = 10


class LoopWatch:
    """Puts the loop guard on a turn, fingerprints its steps and rolls back after a trip."""

    def __init__(self, policy: GuardPolicy, trees: TreeSnapshots | None) -> None:
        self._policy = policy
        self._trees = trees

    async def watch(self, turn: Turn, snapshot_message: str, max_tokens: int | None) -> None:
        """Put the loop guard on the turn, with a snapshot of the files to roll back to."""
        policy = self._policy
        if not policy.enabled:
            return
        start: str | None = None
        if self._trees is not None:
            path = Path(turn.directory)
            try:
                turn.snapshot = await self._trees.snapshot(path, snapshot_message)
                start = await self._trees.fingerprint(path) if policy.stall_steps else None
            except (WorkspaceUnusable, OSError) as exc:
                # Not a working tree of ours (a task outside any session): watched all the
                # same, but without fingerprints nothing counts as a stall.
                log.info("loop_guard_without_snapshot", directory=turn.directory, reason=str(exc))
        turn.guard = LoopGuard(policy, token_budget=max_tokens, start_fingerprint=start)

    async def fingerprint(self, turn: Turn) -> str | None:
        """The files of the turn's tree now (None when stalls are not watched)."""
        if self._trees is None or turn.snapshot is None or not self._policy.stall_steps:
            return None
        try:
            return await self._trees.fingerprint(Path(turn.directory))
        except (WorkspaceUnusable, OSError) as exc:
            log.warning("loop_guard_fingerprint_failed", directory=turn.directory, error=str(exc))
            return None

    async def stop(self, client: OpenCodeClient, turn: Turn, attempt: int) -> LoopStop:
        """The turn was aborted on the guard's word: once OpenCode is idle (nothing
        writes any more), put the files back as they were when the attempt started."""
        assert turn.trip is not None
        await _until_idle(client, turn)
        rolled_back: tuple[str, ...] = ()
        error: str | None = None
        if self._trees is None or turn.snapshot is None:
            error = "the task's directory is not a working tree of the orchestrator"
        else:
            try:
                rolled_back = tuple(
                    await self._trees.roll_back(Path(turn.directory), turn.snapshot)
                )
            except (WorkspaceUnusable, OSError) as exc:
                error = str(exc)
        if error is not None:
            files = f"the files were not rolled back ({error})"
        elif rolled_back:
            shown = ", ".join(rolled_back[:_SHOWN_ROLLED_BACK])
            more = len(rolled_back) - _SHOWN_ROLLED_BACK
            files = f"rolled back {len(rolled_back)} file(s) to the attempt's start: {shown}" + (
                f" and {more} more" if more > 0 else ""
            )
        else:
            files = "no file had changed since the attempt started"
        await turn.emit(
            LogStream.SYSTEM,
            f"{turn.trip.error}; {files}; attempt {attempt} ends FAILED and the task goes to "
            "another capable agent while attempts are left",
        )
        return LoopStop(turn.trip, rolled_back, error)


async def _until_idle(client: OpenCodeClient, turn: Turn) -> None:
    """Wait (a few seconds at most) for an aborted turn's session to be idle."""
    for _ in range(_IDLE_LOOKS):
        with contextlib.suppress(OpenCodeError):
            if turn.session_id not in await client.statuses(turn.directory):
                return
        await asyncio.sleep(_IDLE_PAUSE)
