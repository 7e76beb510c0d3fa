"""What a turn says, read from OpenCode's event stream (and from a poll of
``/session/status`` when the stream is silent or gone): text deltas and whole text
parts become terminal lines, tool calls are shown as they go pending -> running ->
completed and fed to the loop guard with each finished step, the session's status
drives the provider-outage watch and says when the turn is idle, errors end it, and
permission requests are answered by the policy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import structlog

from ...domain.events import LogStream
from ...domain.provider_outage import Signal
from .client import OpenCodeClient, OpenCodeError
from .loop_watch import LoopWatch
from .outage import follow_outage
from .permissions import answer_permission
from .policy import OpenCodePolicy
from .terminal import show_tool, stream_text, tool_call
from .turn import Turn
from .usage import error_text, token_total

log = structlog.get_logger("industrial_orchestrator.executors.opencode")

# Parts that only the provider's answer makes: a new try (``busy``) is no answer.
ANSWER_PARTS = frozenset({"text", "reasoning", "tool", "step-finish"})


class TurnEvents:
    """Applies what OpenCode says about a turn to the ``Turn``."""

    def __init__(self, policy: OpenCodePolicy, loops: LoopWatch) -> None:
        self._policy = policy
        self._loops = loops

    async def poll(self, client: OpenCodeClient, turn: Turn) -> None:
        """Ask for the session's status, for when the stream says nothing."""
        try:
            statuses = await client.statuses(turn.directory)
        except OpenCodeError as exc:
            log.warning("opencode_poll_failed", error=str(exc))
            return
        status = statuses.get(turn.session_id)
        if status is None:
            if turn.busy_seen or await _answered(client, turn):
                turn.idle = True
            return
        turn.busy_seen = True
        await self.on_status(turn, status)

    async def on_event(self, client: OpenCodeClient, turn: Turn, event: dict[str, Any]) -> None:
        """One event of the stream (events of other sessions are passed over)."""
        kind = event.get("type")
        props = event.get("properties") or {}
        if not isinstance(props, dict):
            return
        if props.get("sessionID", turn.session_id) != turn.session_id and kind != (
            "message.part.updated"
        ):
            return
        if kind == "message.part.delta":
            await follow_outage(self._policy, turn, Signal.ANSWERED)
            if props.get("field") == "text":
                await stream_text(turn, str(props.get("partID")), str(props.get("delta") or ""))
        elif kind == "message.part.updated":
            part = props.get("part") or {}
            if isinstance(part, dict) and part.get("sessionID") == turn.session_id:
                if part.get("type") in ANSWER_PARTS and not part.get("synthetic"):
                    await follow_outage(self._policy, turn, Signal.ANSWERED)
                await self.on_part(turn, part)
        elif kind == "session.status":
            status = props.get("status") or {}
            if isinstance(status, dict):
                await self.on_status(turn, status)
        elif kind == "session.idle":
            turn.idle = True
        elif kind == "session.error":
            error = props.get("error") or {}
            turn.error = error_text(error) if isinstance(error, dict) else str(error)
        elif kind == "permission.asked":
            await answer_permission(client, turn, props, self._policy.permission_policy)

    async def on_status(self, turn: Turn, status: dict[str, Any]) -> None:
        kind = status.get("type")
        if kind == "idle":
            if turn.busy_seen:
                turn.idle = True
            return
        turn.busy_seen = True
        if kind == "retry":
            message = str(status.get("message") or "provider error")
            await follow_outage(self._policy, turn, Signal.RETRYING, message, status.get("attempt"))
        elif kind == "busy":
            # A new try, not an answer: the outage goes on until the provider answers.
            await follow_outage(self._policy, turn, Signal.TRYING)

    async def on_part(self, turn: Turn, part: dict[str, Any]) -> None:
        kind = part.get("type")
        if kind == "tool":
            state = part.get("state") or {}
            status = str(state.get("status") or "")
            call = tool_call(part)
            if not await show_tool(turn, part):
                return
            # Pending calls may not have their whole input yet; later states all do.
            if turn.guard is not None and status != "pending" and call not in turn.watched_calls:
                turn.watched_calls.add(call)
                given = state.get("input")
                turn.trip = turn.guard.tool_call(
                    str(part.get("tool")), given if isinstance(given, dict) else None
                )
        elif kind == "step-finish":
            step = str(part.get("id"))
            if turn.guard is None or step in turn.steps:
                return
            turn.steps.add(step)
            used = part.get("tokens")
            turn.tokens += token_total(used) if isinstance(used, dict) else 0
            turn.trip = turn.guard.step_finished(await self._loops.fingerprint(turn), turn.tokens)
        elif kind == "text" and part.get("id") not in turn.text:
            # A text part seen whole (no deltas came for it): say it once it is done.
            time_info = part.get("time") or {}
            if isinstance(time_info, dict) and time_info.get("end"):
                text = str(part.get("text") or "").strip()
                if text:
                    turn.text[str(part.get("id"))] = ""
                    await turn.emit(LogStream.AGENT, text)


async def pump(
    events: AsyncIterator[dict[str, Any]],
    queue: asyncio.Queue[dict[str, Any] | None],
    connected: asyncio.Event,
) -> None:
    """Move the stream's events to ``queue`` (None once it ends), setting ``connected``
    at the first one."""
    try:
        async for event in events:
            connected.set()
            await queue.put(event)
    except OpenCodeError as exc:
        log.warning("opencode_events_lost", error=str(exc))
    finally:
        connected.set()
        await queue.put(None)


async def _answered(client: OpenCodeClient, turn: Turn) -> bool:
    """Whether the turn's answer is complete (a poll that never saw it busy)."""
    try:
        messages = await client.messages(turn.session_id, turn.directory)
    except OpenCodeError:
        return False
    infos = [m.get("info") or {} for m in messages]
    assistants = [info for info in infos if info.get("role") == "assistant"]
    return bool(assistants) and bool((assistants[-1].get("time") or {}).get("completed"))
