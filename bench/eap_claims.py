"""External Agent Protocol at scale: routing among many agents, and task claims/s.

What it measures
----------------
Both parts run in this process against the service layer (``bootstrap.build``: the
components a server builds at start-up, with its default pool), each on a fresh
PostgreSQL database (``io_bench_route_<random>``, ``io_bench_claims_<random>``, dropped
on the way out, also on failure or Ctrl-C). No HTTP is involved: these are the costs
below the API.

1. **Routing.** ``--agents`` (10,000) agents are stored through the agent repository,
   1,000 per transaction (registering them one by one through ``AgentService.register``
   would only measure inserts). They vary as a real fleet would, from a fixed seed: 2-5
   capabilities out of 16, six agent types, 80 % HEALTHY / 10 % DEGRADED / 5 % BUSY /
   5 % OFFLINE, random load, records and last assignment. ``AgentService.route`` is then
   called ``--routes`` (100) times, cycling through a few capability sets and task
   types, and timed per call (p50/p99/max), twice: without Redis, when every call reads
   every agent and ranks them; and with ``REDIS_HOST`` set (a ``REDIS_PREFIX`` of its
   own), when calls rank the routable set from the shared snapshot, rebuilt from the
   database each time it expires (``AGENT_CACHE_SECONDS``). The ranking alone
   (``domain.agents.routing.route`` on agents already in memory) is timed as often.
2. **Claims/s.** ``--workers`` (16) agents are registered through ``AgentService``, and
   ``--tasks`` (2,000) READY tasks, needing ``python`` or ``python`` + ``testing`` (every
   agent holds both), are stored through the task repository, 1,000 per transaction.
   Then one asyncio worker per agent loops ``TaskLeases.claim(agent)`` ->
   ``TaskLeases.report(agent, COMPLETED, attempt)`` until ``claim`` finds nothing; every
   call is timed. Reported: tasks/s (a claim and a report each: an agent holds one task
   at a time), claim and report latency, the spread of work across the workers and this
   process's CPU during the drain. Checked afterwards in SQL: every task COMPLETED,
   exactly one attempt per task, every attempt completed; and no task handed out twice,
   the agents' success counts adding up to the tasks.

Run with ``.venv/bin/python bench/eap_claims.py [--agents 10000] [--routes 100]
[--workers 16] [--tasks 2000] [--no-redis] [--json]``. Exits 1 when a call failed or a
task was not claimed exactly once, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar
from uuid import UUID, uuid4

import asyncpg
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from harness.main import BenchError, bench_main, bench_parser
from harness.postgres import Postgres, add_postgres_args, temporary_database
from harness.redis import add_redis_arg, redis_settings
from harness.report import add_columns, fmt_ms, fmt_pct, fmt_timing, measure_table, progress, red_if
from harness.server import temporary_workdir
from harness.stats import Errors, Timing, cpu_model
from industrial_orchestrator.bootstrap import Components, build
from industrial_orchestrator.config import ConfigurationError, load_settings
from industrial_orchestrator.domain.agents.agent import (
    Agent,
    AgentKind,
    AgentStatus,
    NewAgent,
    new_agent,
)
from industrial_orchestrator.domain.agents.routing import NoAgentAvailable, route
from industrial_orchestrator.domain.errors import OrchestratorError
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome
from industrial_orchestrator.domain.tasks.task import (
    TaskStatus,
    TaskType,
    new_task,
    task_transition,
)
from industrial_orchestrator.logs import configure_logging
from industrial_orchestrator.services.sessions import utc_now
from industrial_orchestrator.services.task_leases import Report as LeaseReport

SEED = 20_240_203
CAPABILITIES = (
    "python",
    "testing",
    "typescript",
    "react",
    "rust",
    "go",
    "sql",
    "docker",
    "kubernetes",
    "security",
    "docs",
    "fastapi",
    "django",
    "terraform",
    "aws",
    "ml",
)
AGENT_TYPES = ("implementer", "tester", "reviewer", "architect", "documenter", "security_auditor")
STATUS_WEIGHTS = {
    AgentStatus.HEALTHY: 80,
    AgentStatus.DEGRADED: 10,
    AgentStatus.BUSY: 5,
    AgentStatus.OFFLINE: 5,
}
# What the routed tasks ask for: common and rare capability sets, with and without a type.
ROUTE_QUERIES: tuple[tuple[tuple[str, ...], TaskType | None], ...] = (
    (("python",), TaskType.CODE_GENERATION),
    (("python", "testing"), TaskType.TESTING),
    (("security",), TaskType.SECURITY_AUDIT),
    (("react", "typescript"), None),
    (("rust", "docker", "kubernetes"), TaskType.CODE_GENERATION),
    (("docs",), TaskType.DOCUMENTATION),
)
INSERT_BATCH = 1000
WORKER_CAPABILITIES = ("python", "testing")

T = TypeVar("T")


# -- results ---------------------------------------------------------------------------------


@dataclass
class RoutingResult:
    agents: int
    stored_in_s: float
    agents_per_s: float
    routes: int
    qualified_avg: float
    no_agent: int
    from_database: Timing
    """``AgentService.route`` without Redis: read every agent, then rank."""
    ranking_only: Timing
    """``domain.agents.routing.route`` on agents already in memory."""
    from_snapshot: Timing | None = None
    """``AgentService.route`` with REDIS_HOST set: the routable set from the shared
    snapshot (rebuilt from the database when it expires, every AGENT_CACHE_SECONDS)."""
    snapshot_seconds: float | None = None


@dataclass
class ClaimsResult:
    workers: int
    tasks: int
    setup_s: float
    seconds: float
    tasks_per_s: float
    claim: Timing
    report: Timing
    per_worker_min: int
    per_worker_max: int
    cpu_percent: float
    """This process's CPU during the drain, in % of one core: near 100 means the one
    event loop (as in one server process) is the limit, not PostgreSQL."""
    errors: int
    error_samples: list[str]
    # Checked in the database afterwards.
    completed: int
    attempts: int
    tasks_not_once: int
    """Tasks with other than exactly one attempt."""
    attempts_not_completed: int
    handed_out_twice: int
    """Task ids a worker was given that another claim had been given already."""
    success_count_total: int

    @property
    def problems(self) -> int:
        return (
            self.errors
            + (self.tasks - self.completed)
            + abs(self.attempts - self.tasks)
            + self.tasks_not_once
            + self.attempts_not_completed
            + self.handed_out_twice
            + abs(self.success_count_total - self.tasks)
        )


@dataclass
class Report:
    cpu_model: str
    cores: int
    routing: RoutingResult | None = None
    claims: ClaimsResult | None = None
    seconds_total: float = 0.0

    @property
    def problems(self) -> int:
        return self.claims.problems if self.claims else 0


# -- helpers ---------------------------------------------------------------------------------


async def timed(call: Callable[[], Awaitable[T]], into: list[float]) -> T:
    started = time.perf_counter()
    result = await call()
    into.append((time.perf_counter() - started) * 1000.0)
    return result


async def open_components(database_url: str, home: Path, **overrides: object) -> Components:
    try:
        settings = load_settings(
            database_url=database_url,
            orchestrator_home=home,
            log_level="WARNING",
            _env_file=None,
            **overrides,
        )
    except ConfigurationError as exc:
        raise BenchError(str(exc)) from exc
    try:
        return await build(settings)
    except (OSError, asyncpg.PostgresError, RedisError) as exc:
        raise BenchError(f"cannot start on {database_url}: {exc!r}") from exc


# -- 1. routing ------------------------------------------------------------------------------


def fleet(count: int, rng: random.Random) -> list[Agent]:
    """``count`` agents that differ the way a real fleet does (see the module docstring)."""
    now = utc_now()
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    agents = []
    for index in range(count):
        capacity = rng.choice((1, 1, 2, 4))
        finished = rng.choice((0, 0, 5, 20, 50, 200))
        successes = round(finished * rng.uniform(0.4, 1.0))
        agent = new_agent(
            id=uuid4(),
            name=f"bench-agent-{index:05d}",
            agent_type=rng.choice(AGENT_TYPES),
            capabilities=rng.sample(CAPABILITIES, rng.randint(2, 5)),
            kind=rng.choice((AgentKind.INTERNAL, AgentKind.EXTERNAL)),
            max_concurrent_tasks=capacity,
            now=now,
        )
        agents.append(
            agent.evolve(
                status=rng.choices(statuses, weights)[0],
                current_load=round(rng.random(), 3),
                tasks_in_progress=rng.randint(0, capacity),
                success_count=successes,
                failure_count=finished - successes,
                last_heartbeat=now,
                last_assigned_at=(
                    None if rng.random() < 0.3 else now - timedelta(seconds=rng.randint(1, 86_400))
                ),
            )
        )
    return agents


async def store_fleet(components: Components, agents: int) -> float:
    """Store ``agents`` varied agents; the seconds it took."""
    everyone = fleet(agents, random.Random(SEED))
    started = time.perf_counter()
    for first in range(0, len(everyone), INSERT_BATCH):
        async with components.uow() as uow:
            for agent in everyone[first : first + INSERT_BATCH]:
                await uow.agents.add(agent)
            await uow.commit()
    return time.perf_counter() - started


async def time_routes(components: Components, routes: int) -> tuple[Timing, float, int]:
    """``AgentService.route`` ``routes`` times: (timing, qualified on average, no agent)."""
    service_ms: list[float] = []
    qualified: list[int] = []
    no_agent = 0
    for index in range(routes):
        required, task_type = ROUTE_QUERIES[index % len(ROUTE_QUERIES)]
        try:
            decision = await timed(
                partial(components.agents.route, required, task_type=task_type), service_ms
            )
        except NoAgentAvailable:
            no_agent += 1
            continue
        qualified.append(decision.qualified)
    average = round(sum(qualified) / len(qualified), 1) if qualified else 0.0
    return Timing.of(service_ms), average, no_agent


async def time_ranking(components: Components, routes: int) -> Timing:
    """The domain's ranking alone, on every agent read once."""
    async with components.uow.reader() as uow:
        loaded = await uow.agents.all()
    ranking_ms: list[float] = []
    for index in range(routes):
        required, task_type = ROUTE_QUERIES[index % len(ROUTE_QUERIES)]
        started = time.perf_counter()
        with suppress(NoAgentAvailable):
            route(loaded, required_capabilities=required, task_type=task_type)
        ranking_ms.append((time.perf_counter() - started) * 1000.0)
    return Timing.of(ranking_ms)


# -- 2. claims -------------------------------------------------------------------------------


@dataclass
class Tally:
    claim_ms: list[float] = field(default_factory=list)
    report_ms: list[float] = field(default_factory=list)
    claimed: list[UUID] = field(default_factory=list)
    per_worker: Counter[int] = field(default_factory=Counter)
    errors: Errors = field(default_factory=Errors)

    def failure(self, what: str, exc: BaseException) -> None:
        self.errors.add(f"{what}: {type(exc).__name__}: {exc}")


async def pull(components: Components, index: int, agent_id: UUID, tally: Tally) -> None:
    """One agent: claim, report completed, again, until there is nothing left to claim."""
    leases = components.leases
    while True:
        try:
            assignment = await timed(partial(leases.claim, agent_id), tally.claim_ms)
        except OrchestratorError as exc:
            tally.failure("claim", exc)
            if tally.errors.count >= 100:
                return
            continue
        if assignment is None:
            return
        tally.claimed.append(assignment.task.id)
        tally.per_worker[index] += 1
        report = LeaseReport(
            task_id=assignment.task.id,
            outcome=AttemptOutcome.COMPLETED,
            attempt=assignment.attempt.attempt,
            output={"summary": f"done by bench worker {index}"},
        )
        try:
            await timed(partial(leases.report, agent_id, report), tally.report_ms)
        except OrchestratorError as exc:
            tally.failure("report", exc)
            if tally.errors.count >= 100:
                return


async def prepare_claims(components: Components, workers: int, tasks: int) -> list[UUID]:
    """Register the pulling agents and create ``tasks`` READY tasks; the agents' ids."""
    agents = [
        await components.agents.register(
            NewAgent(
                name=f"bench-puller-{index:02d}",
                agent_type="implementer",
                capabilities=WORKER_CAPABILITIES,
                kind=AgentKind.EXTERNAL,
            )
        )
        for index in range(workers)
    ]

    # Stored through the repository, 1,000 per transaction: one by one through
    # TaskService (create, then move to READY) would take longer than the drain.
    now = utc_now()
    ready = [
        task_transition(
            new_task(
                id=uuid4(),
                title=f"bench task {index}",
                description="",
                task_type=TaskType.CODE_GENERATION,
                required_capabilities=WORKER_CAPABILITIES[: 1 + index % 2],
                estimated_effort=1.0,
                now=now + timedelta(microseconds=index),  # a stable claim order
            ),
            TaskStatus.READY,
            now=now,
        )
        for index in range(tasks)
    ]
    for first in range(0, len(ready), INSERT_BATCH):
        async with components.uow() as uow:
            for task in ready[first : first + INSERT_BATCH]:
                await uow.tasks.add(task)
            await uow.commit()
    return [agent.id for agent in agents]


async def check_claims(database_url: str) -> tuple[int, int, int, int]:
    """(completed tasks, attempts, tasks without exactly one attempt, attempts not
    completed), read straight from the tables."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        completed = await connection.fetchval(
            "SELECT count(*) FROM tasks WHERE status = $1", TaskStatus.COMPLETED.value
        )
        attempts = await connection.fetchval("SELECT count(*) FROM task_attempts")
        not_once = await connection.fetchval(
            "SELECT count(*) FROM tasks t WHERE "
            "(SELECT count(*) FROM task_attempts a WHERE a.task_id = t.id) <> 1"
        )
        not_completed = await connection.fetchval(
            "SELECT count(*) FROM task_attempts WHERE outcome IS DISTINCT FROM $1",
            AttemptOutcome.COMPLETED.value,
        )
    finally:
        await connection.close()
    return int(completed), int(attempts), int(not_once), int(not_completed)


async def bench_claims(
    components: Components, database_url: str, workers: int, tasks: int
) -> ClaimsResult:
    started = time.perf_counter()
    agent_ids = await prepare_claims(components, workers, tasks)
    setup = time.perf_counter() - started
    progress.print(
        f"claims: {workers} agents and {tasks} READY tasks ready in {setup:.1f} s; pulling"
    )

    tally = Tally()
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(
        *(pull(components, index, agent_id, tally) for index, agent_id in enumerate(agent_ids))
    )
    seconds = time.perf_counter() - started
    cpu_percent = round(100 * (time.process_time() - cpu_started) / seconds, 1)

    completed, attempts, not_once, not_completed = await check_claims(database_url)
    successes = sum(
        [(await components.agents.get(agent_id)).success_count for agent_id in agent_ids]
    )
    counts = [tally.per_worker[index] for index in range(workers)]
    return ClaimsResult(
        workers=workers,
        tasks=tasks,
        setup_s=round(setup, 2),
        seconds=round(seconds, 3),
        tasks_per_s=round(len(tally.claimed) / seconds, 1),
        claim=Timing.of(tally.claim_ms),
        report=Timing.of(tally.report_ms),
        per_worker_min=min(counts),
        per_worker_max=max(counts),
        cpu_percent=cpu_percent,
        errors=tally.errors.count,
        error_samples=tally.errors.samples,
        completed=completed,
        attempts=attempts,
        tasks_not_once=not_once,
        attempts_not_completed=not_completed,
        handed_out_twice=len(tally.claimed) - len(set(tally.claimed)),
        success_count_total=successes,
    )


# -- the run ---------------------------------------------------------------------------------


async def run_async(
    args: argparse.Namespace, report: Report, urls: dict[str, str], home: Path
) -> None:
    if "route" in urls:
        components = await open_components(urls["route"], home / "route")
        try:
            stored_in = await store_fleet(components, args.agents)
            progress.print(
                f"routing: {args.agents} agents stored in {stored_in:.1f} s; "
                f"{args.routes} routes from the database"
            )
            from_database, qualified, no_agent = await time_routes(components, args.routes)
            ranking = await time_ranking(components, args.routes)
        finally:
            await components.close()
        report.routing = RoutingResult(
            agents=args.agents,
            stored_in_s=round(stored_in, 2),
            agents_per_s=round(args.agents / stored_in, 1),
            routes=args.routes,
            qualified_avg=qualified,
            no_agent=no_agent,
            from_database=from_database,
            ranking_only=ranking,
        )
        if not args.no_redis:
            redis = redis_settings(args.redis_port)
            components = await open_components(urls["route"], home / "route", **redis)
            progress.print(f"routing: {args.routes} routes through the Redis snapshot")
            try:
                report.routing.from_snapshot, _, _ = await time_routes(components, args.routes)
                report.routing.snapshot_seconds = components.settings.agent_cache_seconds
            finally:
                await components.close()
    if "claims" in urls:
        components = await open_components(urls["claims"], home / "claims")
        try:
            report.claims = await bench_claims(components, urls["claims"], args.workers, args.tasks)
        finally:
            await components.close()


def run(args: argparse.Namespace) -> Report:
    configure_logging("WARNING")  # the services log every lease at INFO
    report = Report(cpu_model=cpu_model(), cores=os.cpu_count() or 0)
    pg = Postgres.from_args(args)
    started = time.monotonic()
    with ExitStack() as stack:
        # Created and dropped outside the event loop (the helper runs a loop of its own).
        wanted = [("route", args.agents), ("claims", args.tasks)]
        urls = {
            purpose: pg.url(stack.enter_context(temporary_database(pg, purpose)))
            for purpose, size in wanted
            if size
        }
        home = stack.enter_context(temporary_workdir())
        asyncio.run(run_async(args, report, urls, home))
    report.seconds_total = round(time.monotonic() - started, 1)
    return report


# -- output ----------------------------------------------------------------------------------


def print_tables(report: Report) -> None:
    out = Console()
    caption = f"{report.cpu_model}, {report.cores} cores; the run took {report.seconds_total:g} s"
    routing = report.routing
    if routing is not None:
        table = Table(
            title=(
                f"Routing among {routing.agents:,} agents ({routing.routes} routes; "
                f"{routing.qualified_avg:g} qualified on average, {routing.no_agent} with none)"
            ),
            caption=caption,
        )
        add_columns(table, "call", "count", "p50 ms", "p99 ms", "max ms")
        timings = [
            ("route, no Redis (database-filtered candidates)", routing.from_database),
            ("ranking alone (agents in memory)", routing.ranking_only),
        ]
        if routing.from_snapshot is not None:
            timings.append(
                (
                    f"route, Redis snapshot ({routing.snapshot_seconds:g} s TTL)",
                    routing.from_snapshot,
                )
            )
        for label, timing in timings:
            table.add_row(
                label,
                str(timing.count),
                fmt_ms(timing.p50_ms),
                fmt_ms(timing.p99_ms),
                fmt_ms(timing.max_ms),
            )
        out.print(table)
        out.print(
            f"  {routing.agents:,} agents stored in {routing.stored_in_s:g} s "
            f"({routing.agents_per_s:,.0f}/s, {INSERT_BATCH} per transaction)",
            highlight=False,
        )

    claims = report.claims
    if claims is not None:
        exactly_once = (
            claims.completed == claims.tasks
            and claims.attempts == claims.tasks
            and not claims.tasks_not_once
            and not claims.attempts_not_completed
            and not claims.handed_out_twice
        )
        rows = [
            ("tasks claimed and completed / s", f"{claims.tasks_per_s:,.1f}"),
            ("claim p50 / p99 / max ms", fmt_timing(claims.claim)),
            ("report p50 / p99 / max ms", fmt_timing(claims.report)),
            ("tasks per agent (min - max)", f"{claims.per_worker_min} - {claims.per_worker_max}"),
            ("CPU of this process (% of one core)", fmt_pct(claims.cpu_percent)),
            ("tasks COMPLETED", f"{claims.completed:,} of {claims.tasks:,}"),
            ("attempts (should equal tasks)", f"{claims.attempts:,}"),
            ("tasks without exactly one attempt", red_if(claims.tasks_not_once)),
            ("attempts not completed", red_if(claims.attempts_not_completed)),
            ("tasks handed out twice", red_if(claims.handed_out_twice)),
            ("agents' success counts, summed", f"{claims.success_count_total:,}"),
            ("errors", red_if(claims.errors)),
            ("claimed exactly once", "yes" if exactly_once else "[red]NO[/]"),
            ("set-up (register agents, store tasks)", f"{claims.setup_s:g} s"),
        ]
        title = (
            f"Claims on PostgreSQL: {claims.workers} pulling agents, {claims.tasks:,} tasks "
            f"(claim + report each), {claims.seconds:g} s"
        )
        out.print(measure_table(title, rows, caption))
        for sample in claims.error_samples:
            out.print(f"[red]error[/] {sample}", markup=True, highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--agents", type=int, default=10_000, help="agents to route among (10000; 0 skips)"
    )
    parser.add_argument("--routes", type=int, default=100, help="routing calls timed (100)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent pulling agents (16)")
    parser.add_argument(
        "--tasks", type=int, default=2000, help="READY tasks to drain (2000; 0 skips)"
    )
    parser.add_argument(
        "--no-redis", action="store_true", help="skip routing through the Redis snapshot"
    )
    add_redis_arg(parser)
    add_postgres_args(parser)
    args = parser.parse_args(argv)
    if args.agents < 0 or args.tasks < 0 or args.routes < 1 or args.workers < 1:
        parser.error("--routes and --workers must be at least 1, --agents and --tasks at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        run, parse_args(argv), print_tables, failures="problems", cleaned_up="databases dropped"
    )


if __name__ == "__main__":
    sys.exit(main())
