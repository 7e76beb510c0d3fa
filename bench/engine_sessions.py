"""Sessions through their whole lifecycle on a real ``orchestrator serve`` with the engine on.

What it measures
----------------
For each storage backend, SQLite (a fresh ``ORCHESTRATOR_HOME`` in a temporary directory)
and PostgreSQL + Redis (a fresh ``io_bench_engine_<random>`` database and a
``REDIS_PREFIX`` of its own), the script starts a real ``orchestrator serve`` on a free
127.0.0.1 port with the session engine on: ``ENGINE_ENABLED=true``,
``ENGINE_TICK_SECONDS`` from ``--tick`` (1, the default; the engine also wakes on every
commit) and ``MAX_CONCURRENT_SESSIONS`` from ``--max-running`` (by default 100 or
``--sessions`` if more, so that no session queues). Every other setting keeps the
server's default (``LOG_LEVEL=WARNING`` aside); the settings used are printed.

The workers are ``--agents`` (8) external agents in this process (asyncio + aiohttp)
that do no work. Each registers over the External Agent Protocol with every capability
the task templates use (and ``code_generation``, which the fixing task needs), beats
every ``heartbeat_interval_seconds`` the server asks for, long-polls ``tasks/next`` and
reports each task it gets ``completed`` at once. Then ``--sessions`` (50) sessions are
created with ``auto_start`` and the plan ``--template`` (``crud``: seven tasks under a
summary task), ``--create-concurrency`` (8) requests at a time (or ``--rate`` a second:
below the server's capacity the agents wait for work, so the steps show the server's
latency rather than the queues of a fleet started at once), and
``GET /api/v1/sessions/stats`` is polled until every session has ended.

Reported per backend, from the API's own timestamps:

* **wall time**: the first session's ``created_at`` to the last one's ``finished_at``;
  sessions/s and tasks/s over it (tasks: those the agents did, the leaves of the plans;
  the summary tasks the engine closes itself are not counted); and tasks/s once every
  session is planned (from the last session's first task READY to the last task
  COMPLETED: the same server without creating and planning the fleet besides);
* **lifecycle** of a session, ``created_at`` -> ``finished_at``: p50 / p99 / max;
* **overhead per task**: the agents do nothing, so a session's lifecycle is all
  orchestration, and a session cannot be faster than its plan's critical path (the
  longest dependency chain of agent tasks, 6 for crud). Lifecycle ÷ critical-path length
  is the orchestrator's time per step of the plan: hand a READY task out, take its
  result, make the next task READY. One figure per session; p50 / p99 / max;
* **the steps**, from each session's events (``GET /sessions/{id}/events``, the ``at``
  of ``task.transition`` and ``task.leased``): start -> first task READY (planning); a
  task READY -> leased (waiting for an agent's claim), and the same for the tasks that
  became READY while some agent was waiting for work (in a long-poll: this process's
  clock, the same machine's); leased -> COMPLETED (the
  assignment answered, the result posted and recorded); last dependency COMPLETED ->
  the dependent task READY (the engine noticing); last task COMPLETED -> the session's
  ``finished_at`` (closing the plan). An event's ``at`` is the server's clock when its
  transaction began, not when it committed;
* **CPU** during the run (first create to the poll that saw the last session end), in
  % of one core: the server process, this process, and the whole machine (PostgreSQL
  included).

Checked at the end (exit 1 otherwise): every session COMPLETED; every task COMPLETED;
each agent task has exactly one attempt, completed (``GET /tasks/{id}/attempts``), and
one COMPLETED transition in the events; no summary task was ever leased; no task was
handed out twice; every agent call succeeded. The server's warnings and errors are shown
(not counted as failures).

Servers are stopped and the database dropped on the way out, also on failure or Ctrl-C.

Run with ``.venv/bin/python bench/engine_sessions.py [--backend sqlite|postgresql|both]
[--sessions 50] [--agents 8] [--template crud] [--tick 1] [--max-running N] [--json]``.
Exits 1 when a check failed, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
from rich.console import Console

from harness.main import BenchError, bench_main, bench_parser
from harness.postgres import Postgres, add_postgres_args, temporary_database
from harness.redis import add_redis_arg, redis_env
from harness.report import cpu_cells, fmt_timing, measure_table, progress, red_if
from harness.server import (
    EAP,
    SESSIONS_PATH,
    agent_client,
    http_client,
    last_exception_line,
    log_record,
    running_server,
    server_env,
    server_output,
    temporary_workdir,
)
from harness.stats import CpuSnapshot, CpuUse, Errors, Timing, cpu_model
from industrial_orchestrator.domain.planning.templates import TEMPLATES
from industrial_orchestrator.domain.sessions.options import TEMPLATE_CHOICES
from industrial_orchestrator.domain.sessions.states import SessionState, is_terminal

BACKENDS = ("sqlite", "postgresql")
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL + Redis"}
PROMPT = "Build a CRUD REST API for todo items with a database"
LONG_POLL_SECONDS = 20.0
REQUEST_TIMEOUT_S = LONG_POLL_SECONDS + 30.0
STATS_POLL_SECONDS = 0.25
FETCH_CONCURRENCY = 8
PAGE_SIZE = 100
EVENT_PAGE = 1000
SERVER_LOG_SAMPLES = 10
# Every capability a plan can ask for; the fixing task of a failed verification needs
# code_generation, which the templates happen to use too.
CAPABILITIES = tuple(
    sorted(
        {c for template in TEMPLATES.values() for step in template.steps for c in step.capabilities}
        | {"code_generation"}
    )
)

T = TypeVar("T")
Json = dict[str, Any]


# -- results ---------------------------------------------------------------------------------


@dataclass
class Checks:
    """What the run must have left behind; every count but the totals should be 0."""

    sessions_by_status: dict[str, int] = field(default_factory=dict)
    tasks: int = 0
    agent_tasks: int = 0
    agent_tasks_completed: int = 0
    tasks_not_completed: int = 0
    agent_tasks_not_once: int = 0
    """Agent tasks without exactly one attempt, completed."""
    completed_transitions_not_once: int = 0
    """Tasks without exactly one transition to COMPLETED in their session's events."""
    summary_tasks_leased: int = 0
    handed_out_twice: int = 0
    """Times an agent was given a (task, attempt) some agent had been given already."""
    handed_out_vs_tasks: int = 0
    """Tasks handed out to the agents minus agent tasks (0 when each was handed out once)."""
    plan_sizes: list[int] = field(default_factory=list)
    """The distinct numbers of agent tasks per session (one value expected)."""
    agent_errors: int = 0
    agent_error_samples: list[str] = field(default_factory=list)

    def problems(self, sessions: int) -> int:
        completed = self.sessions_by_status.get(SessionState.COMPLETED.value, 0)
        return (
            (sessions - completed)
            + self.tasks_not_completed
            + self.agent_tasks_not_once
            + self.completed_transitions_not_once
            + self.summary_tasks_leased
            + self.handed_out_twice
            + abs(self.handed_out_vs_tasks)
            + self.agent_errors
            + (0 if self.agent_tasks and len(self.plan_sizes) == 1 else 1)
        )


@dataclass
class BackendResult:
    backend: str
    settings: dict[str, str]
    sessions: int
    agents: int
    template: str
    agent_tasks_per_session: int | None
    critical_path: int | None
    """Agent tasks on the longest dependency chain of a session's plan."""
    create_seconds: float
    """Time to send every create request and get its answer."""
    wall_seconds: float | None
    """First ``created_at`` to last ``finished_at``, on the server's clock."""
    observed_seconds: float
    """This process's clock: first create sent to the poll that saw every session end."""
    sessions_per_s: float | None
    tasks_per_s: float | None
    tasks_per_s_planned: float | None
    """Agent tasks COMPLETED from the last session's first task READY to the last one
    COMPLETED, a second: with every session created and planned already."""
    lifecycle: Timing
    """``created_at`` -> ``finished_at`` per session."""
    overhead_per_task: Timing
    """Per session: lifecycle ÷ critical-path length."""
    start: Timing
    """``created_at`` -> ``started_at`` (a queue, if any)."""
    planning: Timing
    """``started_at`` -> first task READY."""
    ready_to_leased: Timing
    ready_to_leased_waiting: Timing
    """READY -> leased for the tasks that became READY while some agent waited for work."""
    leased_to_completed: Timing
    dependency_to_ready: Timing
    """Last dependency COMPLETED -> the dependent task READY."""
    closing: Timing
    """Last task COMPLETED -> the session's ``finished_at``."""
    tasks_per_agent_min: int
    tasks_per_agent_max: int
    heartbeats: int
    cpu_percent: CpuUse
    checks: Checks
    server_log_lines: int = 0
    server_log_samples: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return self.checks.problems(self.sessions)


@dataclass
class Report:
    cpu_model: str
    cores: int
    sessions: list[int]
    agents: int
    template: str
    backends: list[BackendResult] = field(default_factory=list)
    seconds_total: float = 0.0

    @property
    def problems(self) -> int:
        return sum(result.problems for result in self.backends)


# -- the agents ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the agents saw, shared by all of them."""

    handed_out: list[tuple[str, int]] = field(default_factory=list)
    """(task id, attempt) for every assignment received."""
    waits: list[tuple[datetime, datetime]] = field(default_factory=list)
    """When each ask for a task (a long-poll) was sent and answered: an agent waiting."""
    per_agent: Counter[str] = field(default_factory=Counter)
    heartbeats: int = 0
    errors: Errors = field(default_factory=Errors)

    def failure(self, what: str, detail: str) -> None:
        self.errors.add(f"{what}: {detail}")


AGENT_ERRORS = (aiohttp.ClientError, TimeoutError)
"""What an agent's request may fail with (its timeout is a ``TimeoutError``)."""


class NoopAgent:
    """An EAP agent that completes every task it is given at once.

    Its client is aiohttp's, not httpx's: the agents share the two cores with the server
    they load, and httpx spends about 1.3 ms of CPU on a request here against 0.4 for
    aiohttp (a fifth of the whole machine's CPU a task went to the agents' two requests)."""

    def __init__(self, http: aiohttp.ClientSession, name: str, tally: Tally) -> None:
        self.http = http
        self.name = name
        self.tally = tally
        self.agent_id = ""
        self.token = ""
        self.heartbeat_seconds = 30.0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Agent-ID": self.agent_id}

    async def register(self) -> None:
        body = {
            "protocol_version": "1.0",
            "name": self.name,
            "version": "bench",
            "agent_type": "implementer",
            "capabilities": list(CAPABILITIES),
            "max_concurrent_tasks": 1,
        }
        async with self.http.post(f"{EAP}/register", json=body) as response:
            if response.status != 201:
                text = await response.text()
                raise BenchError(f"registering {self.name}: HTTP {response.status} {text[:300]}")
            registered: Json = await response.json()
        self.agent_id = registered["agent_id"]
        self.token = registered["auth_token"]
        self.heartbeat_seconds = float(registered["heartbeat_interval_seconds"])

    async def beat(self) -> None:
        """Heart-beat at the server's interval, switching to each fresh token."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                async with self.http.post(
                    f"{EAP}/{self.agent_id}/heartbeat",
                    headers=self.headers,
                    json={"status": "healthy", "current_load": 0.0},
                ) as response:
                    if response.status != 200:
                        self.tally.failure("heartbeat", f"HTTP {response.status}")
                        continue
                    self.token = (await response.json())["auth_token"]
            except AGENT_ERRORS as exc:
                self.tally.failure("heartbeat", f"{type(exc).__name__}: {exc}")
                continue
            self.tally.heartbeats += 1

    async def pull(self) -> None:
        """Long-poll for a task and report it completed, until cancelled."""
        while True:
            asked = datetime.now(UTC)
            try:
                async with self.http.post(
                    f"{EAP}/{self.agent_id}/tasks/next",
                    params={"wait_seconds": str(LONG_POLL_SECONDS)},
                    headers=self.headers,
                ) as response:
                    status = response.status
                    if status == 200:
                        assignment: Json = await response.json()
                    elif status != 204:
                        problem = f"HTTP {status} {await response.text()}"
                self.tally.waits.append((asked, datetime.now(UTC)))
            except AGENT_ERRORS as exc:
                self.tally.failure("tasks/next", f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)
                continue
            if status == 204:
                continue
            if status != 200:
                self.tally.failure("tasks/next", problem)
                await asyncio.sleep(0.5)
                continue
            task_id, attempt = assignment["task_id"], int(assignment["attempt"])
            self.tally.handed_out.append((task_id, attempt))
            self.tally.per_agent[self.name] += 1
            await self.report(task_id, attempt)

    async def report(self, task_id: str, attempt: int) -> None:
        body = {
            "task_id": task_id,
            "attempt": attempt,
            "status": "completed",
            "output_data": {"summary": f"no-op by {self.name}"},
            "execution_time_ms": 0,
        }
        try:
            async with self.http.post(
                f"{EAP}/{self.agent_id}/tasks/{task_id}/result", headers=self.headers, json=body
            ) as response:
                if response.status != 200:
                    text = await response.text()
                    self.tally.failure("result", f"HTTP {response.status} {text[:200]}")
                    return
                recorded: Json = await response.json()
        except AGENT_ERRORS as exc:
            self.tally.failure("result", f"{type(exc).__name__}: {exc}")
            return
        if recorded.get("task_status") != "COMPLETED":
            self.tally.failure("result", f"task {task_id} is {recorded.get('task_status')}")

    async def leave(self) -> None:
        try:
            async with self.http.delete(f"{EAP}/{self.agent_id}", headers=self.headers) as response:
                if response.status != 204:
                    self.tally.failure("leave", f"HTTP {response.status}")
        except AGENT_ERRORS as exc:
            self.tally.failure("leave", f"{type(exc).__name__}: {exc}")


# -- reading the API -------------------------------------------------------------------------


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def ms_between(start: str | datetime, end: str | datetime) -> float:
    first = at(start) if isinstance(start, str) else start
    last = at(end) if isinstance(end, str) else end
    return (last - first).total_seconds() * 1000.0


async def get_json(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await http.get(path, params=params)
    if response.status_code != 200:
        raise BenchError(f"GET {path}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


async def bounded(calls: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the calls, ``limit`` at a time; their results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(call) for call in calls)))


async def all_pages(http: httpx.AsyncClient, path: str, **params: Any) -> list[Json]:
    items: list[Json] = []
    page = 1
    while True:
        answer = await get_json(http, path, page=page, page_size=PAGE_SIZE, **params)
        items.extend(answer["items"])
        if len(items) >= answer["total"] or not answer["items"]:
            return items
        page += 1


async def session_events(http: httpx.AsyncClient, session_id: str) -> list[Json]:
    """The session's task transitions and leases, oldest first."""
    events: list[Json] = []
    since = 0
    while True:
        answer = await get_json(
            http,
            f"{SESSIONS_PATH}/{session_id}/events",
            since=since,
            limit=EVENT_PAGE,
            type=["task.transition", "task.leased"],
        )
        events.extend(answer["items"])
        if len(answer["items"]) < EVENT_PAGE:
            return events
        since = answer["next_since"]


@dataclass
class SessionRecord:
    session: Json
    tasks: list[Json]
    events: list[Json]
    attempts: dict[str, list[Json]]
    """Per agent task (leaf), its attempts."""


async def read_session(http: httpx.AsyncClient, session: Json) -> SessionRecord:
    tasks = await all_pages(http, "/api/v1/tasks", session_id=session["id"])
    events = await session_events(http, session["id"])
    parents = {task["parent_id"] for task in tasks}
    leaves = [task["id"] for task in tasks if task["id"] not in parents]
    summaries = [task["id"] for task in tasks if task["id"] in parents]
    attempts = {}
    for task_id in [*leaves, *summaries]:
        attempts[task_id] = await get_json(http, f"/api/v1/tasks/{task_id}/attempts")
    return SessionRecord(session, tasks, events, attempts)


# -- analysis --------------------------------------------------------------------------------


def critical_path(leaves: dict[str, Json]) -> int:
    """Tasks on the longest dependency chain among ``leaves`` (a DAG)."""
    longest: dict[str, int] = {}

    def depth(task_id: str) -> int:
        if task_id not in longest:
            dependencies = [d for d in leaves[task_id]["depends_on"] if d in leaves]
            longest[task_id] = 1 + max((depth(d) for d in dependencies), default=0)
        return longest[task_id]

    return max((depth(task_id) for task_id in leaves), default=0)


class Waiting:
    """Whether some agent was waiting for work (in an ask for a task) at a moment."""

    def __init__(self, waits: Iterable[tuple[datetime, datetime]]) -> None:
        ordered = sorted(waits)
        self._starts = [start for start, _ in ordered]
        # The latest end among the waits begun by each start: some wait covers a moment
        # when the latest end of those begun before it is after it.
        self._ends: list[datetime] = []
        for _, end in ordered:
            self._ends.append(max(end, self._ends[-1]) if self._ends else end)

    def at(self, moment: datetime) -> bool:
        index = bisect.bisect_right(self._starts, moment) - 1
        return index >= 0 and self._ends[index] >= moment


@dataclass
class Steps:
    start: list[float] = field(default_factory=list)
    planning: list[float] = field(default_factory=list)
    ready_to_leased: list[float] = field(default_factory=list)
    ready_to_leased_waiting: list[float] = field(default_factory=list)
    leased_to_completed: list[float] = field(default_factory=list)
    dependency_to_ready: list[float] = field(default_factory=list)
    closing: list[float] = field(default_factory=list)
    planned_at: list[datetime] = field(default_factory=list)
    """Per session: its first task READY."""
    done_at: list[datetime] = field(default_factory=list)
    """Per agent task: its COMPLETED."""

    def rate_once_planned(self) -> float | None:
        """Agent tasks a second from the last session's first task READY to the last
        task COMPLETED."""
        if not self.planned_at or not self.done_at:
            return None
        planned, last = max(self.planned_at), max(self.done_at)
        seconds = (last - planned).total_seconds()
        after = sum(done >= planned for done in self.done_at)
        return round(after / seconds, 1) if seconds > 0 else None


def analyse(records: list[SessionRecord], tally: Tally, checks: Checks, steps: Steps) -> None:
    """Fill ``checks`` and ``steps`` from what the API says about every session."""
    statuses: Counter[str] = Counter()
    sizes: set[int] = set()
    waiting = Waiting(tally.waits)
    for record in records:
        session = record.session
        statuses[session["status"]] += 1
        parents = {task["parent_id"] for task in record.tasks}
        leaves = {task["id"]: task for task in record.tasks if task["id"] not in parents}
        sizes.add(len(leaves))
        checks.tasks += len(record.tasks)
        checks.agent_tasks += len(leaves)
        checks.agent_tasks_completed += sum(t["status"] == "COMPLETED" for t in leaves.values())
        checks.tasks_not_completed += sum(task["status"] != "COMPLETED" for task in record.tasks)
        for task_id, attempts in record.attempts.items():
            if task_id in leaves:
                if [a["outcome"] for a in attempts] != ["completed"]:
                    checks.agent_tasks_not_once += 1
            elif attempts:
                checks.summary_tasks_leased += 1

        ready: dict[str, str] = {}
        leased: dict[str, str] = {}
        completed: dict[str, list[str]] = {}
        for event in record.events:
            task_id = event["payload"]["task_id"]
            if event["type"] == "task.leased":
                leased.setdefault(task_id, event["at"])
            elif event["payload"]["to"] == "READY":
                ready.setdefault(task_id, event["at"])
            elif event["payload"]["to"] == "COMPLETED":
                completed.setdefault(task_id, []).append(event["at"])
        checks.completed_transitions_not_once += sum(
            len(completed.get(task["id"], [])) != 1 for task in record.tasks
        )

        if session["started_at"]:
            steps.start.append(ms_between(session["created_at"], session["started_at"]))
            first_ready = [ready[t] for t in leaves if t in ready]
            if first_ready:
                steps.planning.append(ms_between(session["started_at"], min(first_ready, key=at)))
                steps.planned_at.append(at(min(first_ready, key=at)))
        for task_id, task in leaves.items():
            if task_id in ready and task_id in leased:
                steps.ready_to_leased.append(ms_between(ready[task_id], leased[task_id]))
                if waiting.at(at(ready[task_id])):
                    steps.ready_to_leased_waiting.append(
                        ms_between(ready[task_id], leased[task_id])
                    )
            if task_id in leased and completed.get(task_id):
                steps.leased_to_completed.append(ms_between(leased[task_id], completed[task_id][0]))
            dependencies = [d for d in task["depends_on"] if d in leaves]
            done = [completed[d][0] for d in dependencies if completed.get(d)]
            if task_id in ready and dependencies and len(done) == len(dependencies):
                steps.dependency_to_ready.append(ms_between(max(done, key=at), ready[task_id]))
        last_done = [completed[t][0] for t in leaves if completed.get(t)]
        steps.done_at.extend(at(done) for done in last_done)
        if session["finished_at"] and last_done:
            steps.closing.append(ms_between(max(last_done, key=at), session["finished_at"]))

    checks.sessions_by_status = dict(statuses)
    checks.plan_sizes = sorted(sizes)
    handed = Counter(tally.handed_out)
    checks.handed_out_twice = sum(count - 1 for count in handed.values())
    checks.handed_out_vs_tasks = len({task for task, _ in handed}) - checks.agent_tasks
    checks.agent_errors = tally.errors.count
    checks.agent_error_samples = tally.errors.samples


# -- one backend -----------------------------------------------------------------------------


async def create_sessions(
    http: httpx.AsyncClient, count: int, template: str, concurrency: int, rate: float | None
) -> list[str]:
    """Every session at once (``concurrency`` requests at a time), or ``rate`` a second."""
    began = time.monotonic()

    async def create(index: int) -> str:
        if rate is not None:
            await asyncio.sleep(max(0.0, began + index / rate - time.monotonic()))
        response = await http.post(
            SESSIONS_PATH,
            json={
                "title": f"bench engine session {index}",
                "initial_prompt": PROMPT,
                "template": template,
                "auto_start": True,
            },
        )
        if response.status_code != 201:
            raise BenchError(f"creating a session: HTTP {response.status_code} {response.text}")
        created: Json = response.json()
        if created["status"] not in ("RUNNING", "QUEUED"):
            raise BenchError(f"a created session is {created['status']}, not RUNNING or QUEUED")
        return str(created["id"])

    return await bounded([partial(create, index) for index in range(count)], concurrency)


async def wait_until_ended(http: httpx.AsyncClient, count: int, patience: float) -> dict[str, int]:
    """Poll the stats until ``count`` sessions have ended, or for ``patience`` seconds;
    the sessions per state."""
    deadline = time.monotonic() + patience
    while True:
        stats: Json = await get_json(http, f"{SESSIONS_PATH}/stats")
        by_state: dict[str, int] = stats["by_state"]
        ended = sum(n for state, n in by_state.items() if is_terminal(SessionState(state)))
        if ended >= count or time.monotonic() >= deadline:
            return by_state
        await asyncio.sleep(STATS_POLL_SECONDS)


async def drive(
    label: str, args: argparse.Namespace, base_url: str, server_pid: int, settings: dict[str, str]
) -> BackendResult:
    tally = Tally()
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(http_client(base_url, REQUEST_TIMEOUT_S))
        run_tag = secrets.token_hex(3)
        agents = [
            NoopAgent(
                await stack.enter_async_context(agent_client(base_url, REQUEST_TIMEOUT_S)),
                f"bench-noop-{run_tag}-{index:02d}",
                tally,
            )
            for index in range(args.agents)
        ]
        for agent in agents:
            await agent.register()
        settings["AGENT_HEARTBEAT_SECONDS"] = f"{agents[0].heartbeat_seconds:g} (default)"
        if args.rate is not None:
            settings["sessions created per second (--rate)"] = f"{args.rate:g}"
        workers = [asyncio.create_task(agent.pull()) for agent in agents]
        workers += [asyncio.create_task(agent.beat()) for agent in agents]
        try:
            before = await asyncio.to_thread(CpuSnapshot.take, server_pid)
            started = time.monotonic()
            ids = await create_sessions(
                http, args.sessions, args.template, args.create_concurrency, args.rate
            )
            create_seconds = time.monotonic() - started
            progress.print(
                f"{label}: {len(ids)} sessions created in {create_seconds:.1f} s; waiting for them"
            )
            by_state = await wait_until_ended(http, args.sessions, args.timeout)
            observed = time.monotonic() - started
            after = await asyncio.to_thread(CpuSnapshot.take, server_pid)
        finally:
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with suppress(asyncio.CancelledError):
                    await worker
        progress.print(
            f"{label}: {observed:.1f} s; {by_state}; reading every session's tasks and events"
        )
        for agent in agents:
            await agent.leave()

        ours = set(ids)
        sessions = [s for s in await all_pages(http, SESSIONS_PATH) if s["id"] in ours]
        records = await bounded(
            [partial(read_session, http, session) for session in sessions], FETCH_CONCURRENCY
        )

    checks = Checks()
    steps = Steps()
    analyse(records, tally, checks, steps)
    checks.sessions_by_status.setdefault(SessionState.COMPLETED.value, 0)
    missing = args.sessions - len(sessions)
    if missing:
        checks.sessions_by_status["(not found)"] = missing

    lifecycles: list[float] = []
    overheads: list[float] = []
    paths: set[int] = set()
    for record in records:
        session = record.session
        if not session["finished_at"]:
            continue
        parents = {task["parent_id"] for task in record.tasks}
        path = critical_path({t["id"]: t for t in record.tasks if t["id"] not in parents})
        paths.add(path)
        lifecycle = ms_between(session["created_at"], session["finished_at"])
        lifecycles.append(lifecycle)
        if path:
            overheads.append(lifecycle / path)
    finished = [s for s in sessions if s["finished_at"]]
    wall: float | None = None
    if finished:
        first = min(at(s["created_at"]) for s in sessions)
        last = max(at(s["finished_at"]) for s in finished)
        wall = (last - first).total_seconds()
    counts = [tally.per_agent[agent.name] for agent in agents]
    return BackendResult(
        backend=label,
        settings=settings,
        sessions=args.sessions,
        agents=args.agents,
        template=args.template,
        agent_tasks_per_session=checks.plan_sizes[0] if len(checks.plan_sizes) == 1 else None,
        critical_path=next(iter(paths)) if len(paths) == 1 else None,
        create_seconds=round(create_seconds, 2),
        wall_seconds=None if wall is None else round(wall, 3),
        observed_seconds=round(observed, 2),
        sessions_per_s=None if not wall else round(len(finished) / wall, 2),
        tasks_per_s=None if not wall else round(checks.agent_tasks_completed / wall, 1),
        tasks_per_s_planned=steps.rate_once_planned(),
        lifecycle=Timing.of(lifecycles),
        overhead_per_task=Timing.of(overheads),
        start=Timing.of(steps.start),
        planning=Timing.of(steps.planning),
        ready_to_leased=Timing.of(steps.ready_to_leased),
        ready_to_leased_waiting=Timing.of(steps.ready_to_leased_waiting),
        leased_to_completed=Timing.of(steps.leased_to_completed),
        dependency_to_ready=Timing.of(steps.dependency_to_ready),
        closing=Timing.of(steps.closing),
        tasks_per_agent_min=min(counts),
        tasks_per_agent_max=max(counts),
        heartbeats=tally.heartbeats,
        cpu_percent=CpuUse.between(before, after, observed),
        checks=checks,
    )


def read_server_log(workdir: Path, result: BackendResult) -> None:
    """The server's warnings and errors (its first line is the start-up banner)."""
    output = server_output(workdir)
    result.server_log_lines = len(output)
    result.server_log_samples = [summarise(line) for line in output[:SERVER_LOG_SAMPLES]]


def summarise(line: str) -> str:
    record = log_record(line)
    if record is None:
        return line[:300]
    parts = [str(record.get(key, "")) for key in ("level", "logger", "event")]
    parts.append(last_exception_line(record) or "")
    return " ".join(part for part in parts if part)[:300]


def bench_backend(backend: str, args: argparse.Namespace) -> BackendResult:
    label = LABELS[backend]
    with ExitStack() as stack:
        workdir = stack.enter_context(temporary_workdir())
        overrides: dict[str, str] = {}
        if backend == "postgresql":
            redis = redis_env(args.redis_port)
            pg = Postgres.from_args(args)
            database = stack.enter_context(temporary_database(pg, "engine"))
            overrides.update(DATABASE_URL=pg.url(database), **redis)
        overrides.update(
            ENGINE_ENABLED="true",
            ENGINE_TICK_SECONDS=f"{args.tick:g}",
        )
        env = server_env(workdir / "home", **overrides)
        env["MAX_CONCURRENT_SESSIONS"] = str(args.max_running or max(100, args.sessions))
        settings: dict[str, str] = {
            name: env[name]
            for name in (
                "ENGINE_ENABLED",
                "ENGINE_TICK_SECONDS",
                "MAX_CONCURRENT_SESSIONS",
                "LOG_LEVEL",
                "DATABASE_URL",
                "REDIS_HOST",
            )
            if name in env
        }
        if backend == "postgresql":
            settings["serve --workers"] = str(args.workers)
        base_url, pid = stack.enter_context(
            running_server(env, workdir, workers=args.workers if backend == "postgresql" else 1)
        )
        progress.print(
            f"{label}: server {base_url} up (pid {pid}); "
            + ", ".join(f"{name}={value}" for name, value in settings.items())
            + "; everything else default"
        )
        progress.print(
            f"{label}: {args.agents} no-op agents, {args.sessions} '{args.template}' sessions"
        )
        result = asyncio.run(drive(label, args, base_url, pid, settings))
        read_server_log(workdir, result)
    if result.problems:
        progress.print(f"[red]{label}: {result.problems} problems[/]", markup=True)
    return result


def run(args: argparse.Namespace) -> Report:
    report = Report(
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 0,
        sessions=args.sizes,
        agents=args.agents,
        template=args.template,
    )
    started = time.monotonic()
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    for size in args.sizes:  # a server of its own for each size
        for backend in backends:
            report.backends.append(
                bench_backend(backend, argparse.Namespace(**{**vars(args), "sessions": size}))
            )
    report.seconds_total = round(time.monotonic() - started, 1)
    return report


# -- output ----------------------------------------------------------------------------------


def _seconds(timing: Timing) -> str:
    values = (timing.p50_ms, timing.p99_ms, timing.max_ms)
    return " / ".join("-" if v is None else f"{v / 1000:.2f}" for v in values)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def along_path(result: BackendResult) -> float | None:
    """A session's lifecycle rebuilt from the p50 of each step along its critical path
    (every task on it handed out and done, each but the first made READY by the engine
    after its dependency), in seconds: how far the steps account for the lifecycle."""
    path = result.critical_path
    parts = [
        result.start.p50_ms,
        result.planning.p50_ms,
        result.ready_to_leased.p50_ms,
        result.leased_to_completed.p50_ms,
        result.dependency_to_ready.p50_ms,
        result.closing.p50_ms,
    ]
    if not path or any(part is None for part in parts):
        return None
    start, planning, to_lease, to_done, to_ready, closing = (p or 0.0 for p in parts)
    total = start + planning + path * (to_lease + to_done) + (path - 1) * to_ready + closing
    return round(total / 1000, 2)


def print_tables(report: Report) -> None:
    out = Console()
    for result in report.backends:
        checks = result.checks
        settings = ", ".join(
            f"{name}={value}" for name, value in result.settings.items() if name != "DATABASE_URL"
        )
        completed = checks.sessions_by_status.get(SessionState.COMPLETED.value, 0)
        others = {s: n for s, n in checks.sessions_by_status.items() if s != "COMPLETED" and n}
        rows = [
            (
                "agent tasks per session (critical path)",
                f"{_number(result.agent_tasks_per_session, 'd')} "
                f"({_number(result.critical_path, 'd')})",
            ),
            ("wall: first created -> last finished (s)", _number(result.wall_seconds, ".2f")),
            ("  seen here: first create sent -> all ended (s)", f"{result.observed_seconds:.2f}"),
            ("  of which creating every session (s)", f"{result.create_seconds:.2f}"),
            ("sessions/s", _number(result.sessions_per_s, ".2f")),
            ("agent tasks/s", _number(result.tasks_per_s, ".1f")),
            ("  once every session is planned", _number(result.tasks_per_s_planned, ".1f")),
            ("session lifecycle p50 / p99 / max (s)", _seconds(result.lifecycle)),
            (
                "overhead per task: lifecycle ÷ critical path (ms)",
                fmt_timing(result.overhead_per_task),
            ),
            ("steps, p50 / p99 / max ms:", ""),
            ("  created -> started", fmt_timing(result.start)),
            ("  started -> first task READY (planning)", fmt_timing(result.planning)),
            ("  task READY -> leased", fmt_timing(result.ready_to_leased)),
            (
                f"    READY while an agent waited ({result.ready_to_leased_waiting.count})",
                fmt_timing(result.ready_to_leased_waiting),
            ),
            ("  leased -> COMPLETED (assignment + result)", fmt_timing(result.leased_to_completed)),
            ("  dependency COMPLETED -> task READY", fmt_timing(result.dependency_to_ready)),
            ("  last task COMPLETED -> session finished", fmt_timing(result.closing)),
            ("  sum of the p50s along the critical path (s)", _number(along_path(result), ".2f")),
            (
                "CPU % of one core: server / this process / machine",
                " / ".join(cpu_cells(result.cpu_percent)),
            ),
            (
                "tasks per agent (min - max); heartbeats",
                f"{result.tasks_per_agent_min} - {result.tasks_per_agent_max}; {result.heartbeats}",
            ),
            (
                "sessions COMPLETED",
                f"{completed} of {result.sessions}" + (f" [red]{others}[/]" if others else ""),
            ),
            ("tasks (agent tasks)", f"{checks.tasks} ({checks.agent_tasks})"),
            ("tasks not COMPLETED", red_if(checks.tasks_not_completed)),
            (
                "agent tasks without exactly one completed attempt",
                red_if(checks.agent_tasks_not_once),
            ),
            (
                "tasks without exactly one COMPLETED event",
                red_if(checks.completed_transitions_not_once),
            ),
            ("summary tasks leased", red_if(checks.summary_tasks_leased)),
            ("tasks handed out twice", red_if(checks.handed_out_twice)),
            ("tasks handed out - agent tasks", red_if(checks.handed_out_vs_tasks)),
            ("agent call errors", red_if(checks.agent_errors)),
            ("server log lines (warnings and errors)", str(result.server_log_lines)),
        ]
        title = (
            f"{result.backend}: {result.sessions} '{result.template}' sessions, "
            f"{result.agents} no-op EAP agents"
        )
        caption = (
            f"{settings}; other settings default. {report.cpu_model}, {report.cores} cores; "
            f"the whole run took {report.seconds_total:g} s"
        )
        out.print(measure_table(title, rows, caption))
        for sample in checks.agent_error_samples:
            out.print(f"  [red]agent error[/] {sample}", markup=True, highlight=False)
        for line in result.server_log_samples:
            out.print(f"  [yellow]server[/] {line}", markup=True, highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--backend", choices=(*BACKENDS, "both"), default="both", help="storage (both)"
    )
    parser.add_argument(
        "--sessions",
        type=_sizes,
        default=[50],
        help="sessions to run; several sizes (50,200,500) run one server each (50)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`serve --workers` on PostgreSQL (1; SQLite is always one process)",
    )
    parser.add_argument("--agents", type=int, default=8, help="no-op EAP agents (8)")
    parser.add_argument(
        "--template", choices=TEMPLATE_CHOICES, default="crud", help="the sessions' plan (crud)"
    )
    parser.add_argument("--tick", type=float, default=1.0, help="ENGINE_TICK_SECONDS (1)")
    parser.add_argument(
        "--max-running",
        type=int,
        help="MAX_CONCURRENT_SESSIONS (default: 100, or --sessions if more: nothing queues)",
    )
    parser.add_argument(
        "--create-concurrency", type=int, default=8, help="create requests at a time (8)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="sessions created per second (default: all at once): below what the server can "
        "do, agents wait for work and the steps show its latency, not its queues",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for every session (300)"
    )
    add_postgres_args(parser)
    add_redis_arg(parser)
    args = parser.parse_args(argv)
    args.sizes = args.sessions
    args.sessions = max(args.sizes)
    if min(*args.sizes, args.agents, args.create_concurrency, args.workers) < 1:
        parser.error("--sessions, --agents, --create-concurrency and --workers must be at least 1")
    if args.max_running is not None and args.max_running < 1:
        parser.error("--max-running must be at least 1")
    if args.tick <= 0 or args.timeout <= 0 or (args.rate is not None and args.rate <= 0):
        parser.error("--tick, --timeout and --rate must be positive")
    return args


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if not sizes:
        raise argparse.ArgumentTypeError("no size given")
    return sizes


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        run,
        parse_args(argv),
        print_tables,
        failures="problems",
        cleaned_up="servers stopped, databases dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
