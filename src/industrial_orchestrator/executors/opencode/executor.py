"""The OpenCode executor: an internal agent's task, done as one OpenCode session in the
orchestrator session's working tree.

1. An OpenCode session is created for the task's directory, and the event stream is
   opened *before* the prompt is sent, so nothing it says is missed.
2. What the agent says (text deltas, tool calls as they go pending -> running ->
   completed) becomes the session's terminal lines.
3. The turn ends when OpenCode says the session is idle; when the stream is silent, a
   poll of ``/session/status`` tells the same (the stream can drop).
4. Tokens and cost are summed from the assistant messages; an assistant error
   (``APIError``, aborted) fails the task with its message; the diff of the turn is the
   task's artifact (stored, not written: the files are in the tree already).
5. Permission requests follow the policy: inside the working tree they are allowed,
   anything else waits for the operator (``/sessions/{id}/permissions``).
6. The deadline is the executor's own: OpenCode retries a failing provider at length, so
   past the deadline the turn is aborted and the task fails. A provider outage
   (``domain.provider_outage``) marks the attempt troubled once, which the engine shows
   as DEGRADED, until the provider answers again; an outage past
   ``PROVIDER_RETRY_BUDGET_SECONDS``, or one OpenCode stops retrying, ends the attempt
   for good (``Outcome.final``) with the provider's error and the setting to fix.
7. The loop guard (``domain.tasks.loop_guard``) watches the turn: every tool call, and at the
   end of every step the tokens used and a fingerprint of the files. When it trips, the
   turn is aborted, the files changed since the attempt's snapshot are put back, and the
   task fails with the guard's reason, for the leases to hand it to another agent.

The turn's state is ``turn.Turn``; what it says is read by ``events`` (text through
``terminal``, permissions through ``permissions``), the provider outage is followed by
``outage``, the loop guard by ``loop_watch``, and tokens and cost are summed by ``usage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ...domain.agents.agent import Agent
from ...domain.events import LogStream
from ...domain.provider_outage import Signal
from ...domain.tasks.artifacts import Artifact, new_artifact
from ...domain.tasks.loop_guard import LoopStop
from ..base import Job, LogLine, Outcome, TreeSnapshots
from .client import ModelRef, OpenCodeClient, OpenCodeError
from .events import TurnEvents, pump
from .loop_watch import LoopWatch
from .outage import follow_outage
from .policy import OpenCodePolicy
from .prompt import task_prompt
from .server import OpenCodeServer
from .terminal import by_line, flush, show_unsaid, show_untold_tools
from .turn import Turn
from .usage import usage

DIFF_ARTIFACT = ".orchestrator/task.diff"
MAX_DIFF_BYTES = 512 * 1024
MAX_SUMMARY_CHARS = 2000
# How long a finished turn's last answer is given to show how it ended (10 x 0.2 s).
_SETTLE_LOOKS = 10
_SETTLE_PAUSE = 0.2


class OpenCodeExecutor:
    name = "opencode"

    def __init__(
        self,
        server: OpenCodeServer,
        policy: OpenCodePolicy,
        trees: TreeSnapshots | None = None,
    ) -> None:
        self._server = server
        self._policy = policy
        self._loops = LoopWatch(policy.guard, trees)
        self._events = TurnEvents(policy, self._loops)

    @property
    def unavailable_reason(self) -> str | None:
        return self._server.reason

    async def close(self) -> None:
        """Nothing of its own to stop: the server is the runtime's."""

    async def execute(self, job: Job) -> Outcome:
        client = self._server.client
        if client is None or self._server.reason:
            return Outcome(False, error=f"OpenCode is unavailable: {self._server.reason}")
        agent, task, emit = job.agent, job.task, job.emit
        directory = str(job.workspace)
        prompt = task_prompt(
            goal=job.goal,
            task=task,
            context=job.context,
            finished_dependencies=job.finished_dependencies,
            workspace=directory,
        )
        model_name = agent.metadata.get("model") or self._policy.default_model
        model = ModelRef.parse(str(model_name)) if model_name else None
        opencode_agent = str(agent.metadata.get("opencode_agent") or "build")
        title = f"{task.title} (task {str(task.id)[:8]}, attempt {job.attempt})"
        session_id = await client.create_session(directory, title)
        await emit(
            LogStream.SYSTEM,
            f"{agent.name}: OpenCode session {session_id} ({opencode_agent}"
            f"{', ' + str(model) if model else ''})",
        )
        turn = Turn(session_id, directory, by_line(emit), model=model_name, hold_up=job.hold_up)
        await self._loops.watch(
            turn, f"Loop guard: task {task.id} attempt {job.attempt} starts", job.max_tokens
        )
        deadline = time.monotonic() + self._policy.task_timeout_seconds
        loop_stop: LoopStop | None = None
        try:
            await self._run_turn(client, turn, prompt, model, opencode_agent, deadline)
            if turn.trip is not None:
                loop_stop = await self._loops.stop(client, turn, job.attempt)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(client.abort(session_id, directory))
            raise
        # A trouble left on the attempt is left on purpose: the report closes the attempt,
        # and clearing it first would show the session RUNNING for a moment before it fails.
        return await self._outcome(client, turn, loop_stop)

    async def _run_turn(
        self,
        client: OpenCodeClient,
        turn: Turn,
        prompt: str,
        model: ModelRef | None,
        opencode_agent: str,
        deadline: float,
    ) -> None:
        events = client.events(turn.directory)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        connected = asyncio.Event()
        reader = asyncio.create_task(pump(events, queue, connected), name="opencode-events")
        try:
            # Wait for the stream to be open (its first event), so the turn's events are seen.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._policy.poll_seconds * 5):
                    await connected.wait()
            await client.prompt(
                turn.session_id, turn.directory, prompt, model=model, agent=opencode_agent
            )
            while not turn.idle:
                left = deadline - time.monotonic()
                if left <= 0:
                    turn.deadline_passed = True
                    await client.abort(turn.session_id, turn.directory)
                    turn.error = (
                        f"deadline of {self._policy.task_timeout_seconds:.0f} s passed"
                        + (
                            f" while the provider was being retried ({turn.outage.error})"
                            if turn.outage
                            else ""
                        )
                        + "; the OpenCode session was aborted"
                    )
                    await turn.emit(LogStream.SYSTEM, turn.error)
                    return
                if turn.outage is not None:
                    await follow_outage(self._policy, turn, Signal.TICK)
                if turn.final:
                    await client.abort(turn.session_id, turn.directory)
                    return
                try:
                    # Not asyncio.wait_for: before Python 3.12 it drops a cancellation
                    # that lands as the event arrives, and the aborted turn would go on.
                    async with asyncio.timeout(min(left, self._policy.poll_seconds)):
                        event = await queue.get()
                except TimeoutError:
                    await self._events.poll(client, turn)
                    continue
                if event is None:  # the stream ended: polling carries on alone
                    await self._events.poll(client, turn)
                    await asyncio.sleep(min(left, self._policy.poll_seconds))
                    continue
                await self._events.on_event(client, turn, event)
                if turn.final:
                    await client.abort(turn.session_id, turn.directory)
                    return
                if turn.trip is not None:
                    await flush(turn)
                    turn.error = turn.trip.error
                    # Failing to abort still ends the attempt: the roll-back waits for idle.
                    with contextlib.suppress(OpenCodeError):
                        await client.abort(turn.session_id, turn.directory)
                    return
            await flush(turn)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _outcome(
        self, client: OpenCodeClient, turn: Turn, loop_stop: LoopStop | None = None
    ) -> Outcome:
        messages = await _settled(client, turn)
        tokens, cost, summary, error = usage(messages)
        await show_untold_tools(turn, messages)
        await show_unsaid(turn, summary)
        failed = turn.error or error
        if failed and turn.outage is not None and not turn.final and not turn.deadline_passed:
            # OpenCode stopped retrying before our budget ran out: trying the task again
            # would only begin the same outage again.
            await follow_outage(self._policy, turn, Signal.GAVE_UP, failed)
        error = turn.error or error
        artifacts: list[Artifact] = []
        user_ids = [m["info"]["id"] for m in messages if m.get("info", {}).get("role") == "user"]
        with contextlib.suppress(OpenCodeError):
            files = await client.diff(
                turn.session_id, turn.directory, user_ids[0] if user_ids else None
            )
            patch = "".join(str(f.get("patch") or "") for f in files if isinstance(f, dict))
            if patch:
                data = patch.encode()[:MAX_DIFF_BYTES]
                artifacts.append(new_artifact(DIFF_ARTIFACT, data, "text/x-diff"))
        output = {"opencode_session": turn.session_id}
        if error:
            return Outcome(
                False,
                error=error,
                output=output,
                tokens_used=tokens,
                cost_usd=cost,
                loop_stop=loop_stop,
                final=turn.final,
            )
        return Outcome(
            True,
            summary=(summary or "done")[:MAX_SUMMARY_CHARS],
            artifacts=artifacts,
            write_artifacts=False,
            output=output,
            tokens_used=tokens,
            cost_usd=cost,
        )

    async def ask(
        self, agent: Agent, directory: str, prompt: str, emit: LogLine
    ) -> tuple[str, int, float]:
        """One turn of ``agent`` outside any task (e.g. the architect asked for a plan):
        its last answer, tokens and cost. Raises ``OpenCodeError`` when it failed."""
        client = self._server.client
        if client is None or self._server.reason:
            raise OpenCodeError(f"OpenCode is unavailable: {self._server.reason}")
        model_name = agent.metadata.get("model") or self._policy.default_model
        model = ModelRef.parse(str(model_name)) if model_name else None
        opencode_agent = str(agent.metadata.get("opencode_agent") or "plan")
        session_id = await client.create_session(directory, f"{agent.name}: planning")
        turn = Turn(session_id, directory, by_line(emit))
        deadline = time.monotonic() + self._policy.task_timeout_seconds
        try:
            await self._run_turn(client, turn, prompt, model, opencode_agent, deadline)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(client.abort(session_id, directory))
            raise
        messages = await _settled(client, turn)
        tokens, cost, answer, error = usage(messages)
        if turn.error or error:
            raise OpenCodeError(turn.error or error or "failed")
        await show_untold_tools(turn, messages)
        await show_unsaid(turn, answer)
        return answer or "", tokens, cost


async def _settled(client: OpenCodeClient, turn: Turn) -> list[dict[str, Any]]:
    """The turn's messages once the last answer is finished or failed: OpenCode can say
    the session is idle before it records a failed answer's error."""
    for _ in range(_SETTLE_LOOKS):
        messages = await client.messages(turn.session_id, turn.directory)
        infos = [m.get("info") or {} for m in messages if (m.get("info") or {}).get("role")]
        last = infos[-1] if infos else {}
        if last.get("role") == "assistant" and (last.get("finish") or last.get("error")):
            return messages
        await asyncio.sleep(_SETTLE_PAUSE)
    return messages
