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
7. The loop guard (``domain.loop_guard``) watches the turn: every tool call, and at the
   end of every step the tokens used and a fingerprint of the files. When it trips, the
   turn is aborted, the files changed since the attempt's snapshot are put back, and the
   task fails with the guard's reason, for the leases to hand it to another agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import structlog

from ...domain.agents import Agent
from ...domain.artifacts import Artifact, new_artifact
from ...domain.errors import WorkspaceUnusable
from ...domain.events import LogStream
from ...domain.loop_guard import GuardPolicy, GuardTrip, LoopGuard, LoopStop
from ...domain.provider_outage import Outage, Signal, Step, exhausted_reason, next_step
from ...domain.webhooks import permission_needed_line
from ..base import HoldUp, Job, LogLine, Outcome, TreeSnapshots
from .client import ModelRef, OpenCodeClient, OpenCodeError
from .prompt import task_prompt
from .server import OpenCodeServer

log = structlog.get_logger("industrial_orchestrator.executors.opencode")

DIFF_ARTIFACT = ".orchestrator/task.diff"
_TEXT_FLUSH_CHARS = 400
MAX_DIFF_BYTES = 512 * 1024
MAX_SUMMARY_CHARS = 2000
# How long a finished turn's last answer is given to show how it ended (10 x 0.2 s).
_SETTLE_LOOKS = 10
_SETTLE_PAUSE = 0.2
# How long an aborted turn is given to go idle before its files are rolled back (25 x 0.2 s).
_IDLE_LOOKS = 25
_SHOWN_ROLLED_BACK = 10
# Permissions whose patterns are paths: allowed inside the tree under the ``workspace``
# policy. Anything else (a shell command, a URL) is the operator's to allow.
PATH_PERMISSIONS = frozenset(
    {"read", "edit", "write", "list", "glob", "grep", "external_directory"}
)
# Parts that only the provider's answer makes: a new try (``busy``) is no answer.
ANSWER_PARTS = frozenset({"text", "reasoning", "tool", "step-finish"})


@dataclass(frozen=True, slots=True)
class OpenCodePolicy:
    task_timeout_seconds: float
    poll_seconds: float = 2.0
    permission_policy: str = "workspace"
    """``workspace``: allowed when every path asked for is inside the tree; ``ask``:
    every request waits for the operator."""
    default_model: str | None = None
    guard: GuardPolicy = field(default_factory=GuardPolicy)
    provider_retry_budget_seconds: float = 180.0
    unconfigured_fix: str = "set OPENCODE_MODEL=provider/model and that provider's key"
    """What to set when the provider keeps failing and no model is named (the runtime
    says it from the settings: ``model_setting``)."""


@dataclass(slots=True)
class _Turn:
    """What one OpenCode turn has said so far."""

    session_id: str
    directory: str
    emit: LogLine
    hold_up: HoldUp | None = None
    """Says what holds the task's attempt up (none for a turn outside any task)."""
    busy_seen: bool = False
    idle: bool = False
    error: str | None = None
    outage: Outage | None = None
    """The provider failing since, until it answers (``domain.provider_outage``)."""
    model: str | None = None
    """The model asked for (None: OpenCode's default), named when the provider fails."""
    final: bool = False
    """The attempt ended for good: trying again would meet the same outage."""
    deadline_passed: bool = False
    tool_states: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    """Text not yet emitted, by part id."""
    asked: set[str] = field(default_factory=set)
    guard: LoopGuard | None = None
    """Watches a task's turn (none for a turn outside any task)."""
    snapshot: str | None = None
    """The files when the attempt started (a commit), for a roll-back."""
    trip: GuardTrip | None = None
    watched_calls: set[str] = field(default_factory=set)
    steps: set[str] = field(default_factory=set)
    tokens: int = 0
    """Tokens of the steps finished so far."""


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
        self._trees = trees

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
        turn = _Turn(session_id, directory, _by_line(emit), model=model_name, hold_up=job.hold_up)
        await self._watch(
            turn, f"Loop guard: task {task.id} attempt {job.attempt} starts", job.max_tokens
        )
        deadline = time.monotonic() + self._policy.task_timeout_seconds
        loop_stop: LoopStop | None = None
        try:
            await self._run_turn(client, turn, prompt, model, opencode_agent, deadline, task.id)
            if turn.trip is not None:
                loop_stop = await self._stop_looping(client, turn, job.attempt)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(client.abort(session_id, directory))
            raise
        # A trouble left on the attempt is left on purpose: the report closes the attempt,
        # and clearing it first would show the session RUNNING for a moment before it fails.
        return await self._outcome(client, turn, loop_stop)

    async def _watch(self, turn: _Turn, snapshot_message: str, max_tokens: int | None) -> None:
        """Put the loop guard on the turn, with a snapshot of the files to roll back to."""
        policy = self._policy.guard
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

    async def _fingerprint(self, turn: _Turn) -> str | None:
        if self._trees is None or turn.snapshot is None or not self._policy.guard.stall_steps:
            return None
        try:
            return await self._trees.fingerprint(Path(turn.directory))
        except (WorkspaceUnusable, OSError) as exc:
            log.warning("loop_guard_fingerprint_failed", directory=turn.directory, error=str(exc))
            return None

    async def _stop_looping(self, client: OpenCodeClient, turn: _Turn, attempt: int) -> LoopStop:
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

    async def _run_turn(
        self,
        client: OpenCodeClient,
        turn: _Turn,
        prompt: str,
        model: ModelRef | None,
        opencode_agent: str,
        deadline: float,
        task_id: Any,
    ) -> None:
        events = client.events(turn.directory)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        connected = asyncio.Event()
        reader = asyncio.create_task(_pump(events, queue, connected), name="opencode-events")
        try:
            # Wait for the stream to be open (its first event), so the turn's events are seen.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connected.wait(), self._policy.poll_seconds * 5)
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
                    await self._outage(turn, Signal.TICK, task_id)
                if turn.final:
                    await client.abort(turn.session_id, turn.directory)
                    return
                try:
                    event = await asyncio.wait_for(
                        queue.get(), min(left, self._policy.poll_seconds)
                    )
                except TimeoutError:
                    await self._poll(client, turn, task_id)
                    continue
                if event is None:  # the stream ended: polling carries on alone
                    await self._poll(client, turn, task_id)
                    await asyncio.sleep(min(left, self._policy.poll_seconds))
                    continue
                await self._on_event(client, turn, event, task_id)
                if turn.final:
                    await client.abort(turn.session_id, turn.directory)
                    return
                if turn.trip is not None:
                    await _flush(turn)
                    turn.error = turn.trip.error
                    # Failing to abort still ends the attempt: the roll-back waits for idle.
                    with contextlib.suppress(OpenCodeError):
                        await client.abort(turn.session_id, turn.directory)
                    return
            await _flush(turn)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _poll(self, client: OpenCodeClient, turn: _Turn, task_id: Any) -> None:
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
        await self._on_status(turn, status, task_id)

    async def _on_event(
        self, client: OpenCodeClient, turn: _Turn, event: dict[str, Any], task_id: Any
    ) -> None:
        kind = event.get("type")
        props = event.get("properties") or {}
        if not isinstance(props, dict):
            return
        if props.get("sessionID", turn.session_id) != turn.session_id and kind != (
            "message.part.updated"
        ):
            return
        if kind == "message.part.delta":
            await self._outage(turn, Signal.ANSWERED, task_id)
            if props.get("field") == "text":
                await _text(turn, str(props.get("partID")), str(props.get("delta") or ""))
        elif kind == "message.part.updated":
            part = props.get("part") or {}
            if isinstance(part, dict) and part.get("sessionID") == turn.session_id:
                if part.get("type") in ANSWER_PARTS and not part.get("synthetic"):
                    await self._outage(turn, Signal.ANSWERED, task_id)
                await self._on_part(turn, part)
        elif kind == "session.status":
            status = props.get("status") or {}
            if isinstance(status, dict):
                await self._on_status(turn, status, task_id)
        elif kind == "session.idle":
            turn.idle = True
        elif kind == "session.error":
            error = props.get("error") or {}
            turn.error = _error_text(error) if isinstance(error, dict) else str(error)
        elif kind == "permission.asked":
            await self._on_permission(client, turn, props)

    async def _on_status(self, turn: _Turn, status: dict[str, Any], task_id: Any) -> None:
        kind = status.get("type")
        if kind == "idle":
            if turn.busy_seen:
                turn.idle = True
            return
        turn.busy_seen = True
        if kind == "retry":
            message = str(status.get("message") or "provider error")
            await self._outage(turn, Signal.RETRYING, task_id, message, status.get("attempt"))
        elif kind == "busy":
            # A new try, not an answer: the outage goes on until the provider answers.
            await self._outage(turn, Signal.TRYING, task_id)

    async def _outage(
        self,
        turn: _Turn,
        signal: Signal,
        task_id: Any,
        error: str | None = None,
        attempt: Any = None,
    ) -> None:
        """Follow the provider's outage: DEGRADED once when it begins, RUNNING again only
        once the provider answered, and the attempt's end when it outlives the budget."""
        if turn.final or (turn.outage is None and signal != Signal.RETRYING):
            return
        now = time.monotonic()
        budget = self._policy.provider_retry_budget_seconds
        step = next_step(turn.outage, signal, now=now, budget_seconds=budget, error=error)
        turn.outage = step.outage
        if step.step == Step.BEGAN:
            assert step.outage is not None
            await turn.emit(
                LogStream.SYSTEM,
                f"provider failing, OpenCode retrying (attempt {attempt}): {step.outage.error}",
            )
            if turn.hold_up is not None:
                with contextlib.suppress(Exception):
                    await turn.hold_up(f"provider retrying: {step.outage.error}")
        elif step.step == Step.ENDED:
            await turn.emit(LogStream.SYSTEM, "provider answering again")
            if turn.hold_up is not None:
                with contextlib.suppress(Exception):
                    await turn.hold_up(None)
        elif step.step == Step.EXHAUSTED:
            assert step.outage is not None
            turn.final = True
            turn.error = exhausted_reason(
                step.outage, now=now, budget_seconds=budget, fix=self._fix(turn)
            )
            await turn.emit(LogStream.SYSTEM, f"{turn.error}; the attempt ends FAILED")

    def _fix(self, turn: _Turn) -> str:
        if turn.model is None:
            return self._policy.unconfigured_fix
        return (
            f"check the model {turn.model} (OPENCODE_MODEL, or the agent's model) and its "
            "provider's key in OpenCode's environment"
        )

    async def _on_part(self, turn: _Turn, part: dict[str, Any]) -> None:
        kind = part.get("type")
        if kind == "tool":
            state = part.get("state") or {}
            status = str(state.get("status") or "")
            call = str(part.get("callID") or part.get("id"))
            if turn.tool_states.get(call) == status:
                return
            turn.tool_states[call] = status
            await _flush(turn)
            title = state.get("title") or _tool_input(state.get("input"))
            line = f"{part.get('tool')} [{status}]" + (f" {title}" if title else "")
            if status == "error":
                line += f": {str(state.get('error') or '')[:500]}"
            await turn.emit(LogStream.TOOL, line)
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
            turn.tokens += _token_total(used) if isinstance(used, dict) else 0
            turn.trip = turn.guard.step_finished(await self._fingerprint(turn), turn.tokens)
        elif kind == "text" and part.get("id") not in turn.text:
            # A text part seen whole (no deltas came for it): say it once it is done.
            time_info = part.get("time") or {}
            if isinstance(time_info, dict) and time_info.get("end"):
                text = str(part.get("text") or "").strip()
                if text:
                    turn.text[str(part.get("id"))] = ""
                    await turn.emit(LogStream.AGENT, text)

    async def _on_permission(
        self, client: OpenCodeClient, turn: _Turn, props: dict[str, Any]
    ) -> None:
        request_id = str(props.get("id"))
        if request_id in turn.asked:
            return
        turn.asked.add(request_id)
        what = f"{props.get('permission')} {', '.join(map(str, props.get('patterns') or []))}"
        if (
            self._policy.permission_policy == "workspace"
            and props.get("permission") in PATH_PERMISSIONS
            and inside_tree(props.get("patterns") or [], Path(turn.directory))
        ):
            await client.reply_permission(request_id, turn.directory, "once")
            await turn.emit(LogStream.SYSTEM, f"permission allowed (inside the workspace): {what}")
            return
        await turn.emit(LogStream.SYSTEM, permission_needed_line(what, request_id))

    async def _outcome(
        self, client: OpenCodeClient, turn: _Turn, loop_stop: LoopStop | None = None
    ) -> Outcome:
        messages = await _settled(client, turn)
        tokens, cost, summary, error = _usage(messages)
        failed = turn.error or error
        if failed and turn.outage is not None and not turn.final and not turn.deadline_passed:
            # OpenCode stopped retrying before our budget ran out: trying the task again
            # would only begin the same outage again.
            await self._outage(turn, Signal.GAVE_UP, None, failed)
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
        turn = _Turn(session_id, directory, _by_line(emit))
        deadline = time.monotonic() + self._policy.task_timeout_seconds
        try:
            await self._run_turn(client, turn, prompt, model, opencode_agent, deadline, None)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(client.abort(session_id, directory))
            raise
        messages = await client.messages(session_id, directory)
        tokens, cost, answer, error = _usage(messages)
        if turn.error or error:
            raise OpenCodeError(turn.error or error or "failed")
        return answer or "", tokens, cost


def _by_line(emit: LogLine) -> LogLine:
    """The terminal is a stream: what the agent says arrives as whole lines."""

    async def line(stream: LogStream, text: str) -> None:
        await emit(stream, text if text.endswith("\n") else text + "\n")

    return line


async def _pump(
    events: AsyncIterator[dict[str, Any]],
    queue: asyncio.Queue[dict[str, Any] | None],
    connected: asyncio.Event,
) -> None:
    try:
        async for event in events:
            connected.set()
            await queue.put(event)
    except OpenCodeError as exc:
        log.warning("opencode_events_lost", error=str(exc))
    finally:
        connected.set()
        await queue.put(None)


async def _settled(client: OpenCodeClient, turn: _Turn) -> list[dict[str, Any]]:
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


async def _answered(client: OpenCodeClient, turn: _Turn) -> bool:
    """Whether the turn's answer is complete (a poll that never saw it busy)."""
    try:
        messages = await client.messages(turn.session_id, turn.directory)
    except OpenCodeError:
        return False
    infos = [m.get("info") or {} for m in messages]
    assistants = [info for info in infos if info.get("role") == "assistant"]
    return bool(assistants) and bool((assistants[-1].get("time") or {}).get("completed"))


async def _text(turn: _Turn, part_id: str, delta: str) -> None:
    buffered = turn.text.get(part_id, "") + delta
    if "\n" in buffered or len(buffered) >= _TEXT_FLUSH_CHARS:
        head, _, rest = buffered.rpartition("\n") if "\n" in buffered else (buffered, "", "")
        if head.strip():
            await turn.emit(LogStream.AGENT, head)
        buffered = rest
    turn.text[part_id] = buffered


async def _flush(turn: _Turn) -> None:
    for part_id, text in list(turn.text.items()):
        if text.strip():
            await turn.emit(LogStream.AGENT, text)
        turn.text[part_id] = ""


def _usage(messages: list[dict[str, Any]]) -> tuple[int, float, str | None, str | None]:
    tokens = 0
    cost = 0.0
    summary: str | None = None
    error: str | None = None
    for message in messages:
        info = message.get("info") or {}
        if info.get("role") != "assistant":
            continue
        tokens += _token_total(info.get("tokens") or {})
        cost += float(info.get("cost") or 0.0)
        if isinstance(info.get("error"), dict):
            error = _error_text(info["error"])
        texts = [
            str(p.get("text") or "")
            for p in message.get("parts") or []
            if isinstance(p, dict) and p.get("type") == "text"
        ]
        if any(t.strip() for t in texts):
            summary = "\n".join(t for t in texts if t.strip())
    return tokens, cost, summary, error


def _token_total(used: dict[str, Any]) -> int:
    """Every token of a message or step: input, output, reasoning and cache."""
    cache = used.get("cache") or {}
    return int(
        (used.get("input") or 0)
        + (used.get("output") or 0)
        + (used.get("reasoning") or 0)
        + (cache.get("read") or 0)
        + (cache.get("write") or 0)
    )


async def _until_idle(client: OpenCodeClient, turn: _Turn) -> None:
    """Wait (a few seconds at most) for an aborted turn's session to be idle."""
    for _ in range(_IDLE_LOOKS):
        with contextlib.suppress(OpenCodeError):
            if turn.session_id not in await client.statuses(turn.directory):
                return
        await asyncio.sleep(_SETTLE_PAUSE)


def _error_text(error: dict[str, Any]) -> str:
    name = str(error.get("name") or "error")
    data = error.get("data") or {}
    message = data.get("message") if isinstance(data, dict) else None
    return f"{name}: {message}" if message else name


def _tool_input(raw: Any) -> str:
    if not isinstance(raw, dict):
        return ""
    for key in ("filePath", "path", "command", "pattern", "url"):
        if raw.get(key):
            return str(raw[key])[:200]
    return ""


def inside_tree(patterns: list[Any], root: Path) -> bool:
    """Every pattern names a path inside ``root`` (relative ones are taken from it)."""
    if not patterns:
        return False
    resolved_root = root.resolve()
    for pattern in patterns:
        text = str(pattern)
        if any(ch in text for ch in "*?[") and not text.endswith("/*"):
            return False
        path = PurePosixPath(text.removesuffix("/*"))
        full = path if path.is_absolute() else PurePosixPath(resolved_root) / path
        try:
            Path(full).resolve().relative_to(resolved_root)
        except ValueError:
            return False
    return True
