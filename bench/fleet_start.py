"""Starting a fleet: what creating and planning sessions costs, before any agent works.

What it measures
----------------
The part of ``engine_sessions.py``'s run that comes before the agents' work: on a real
``orchestrator serve`` with the engine on (PostgreSQL + Redis, a fresh
``io_bench_fleet_<random>`` database, ``serve --workers`` from ``--workers``), ``--agents``
(8) external agents register with every capability the templates use and beat, but
never ask for work. Then ``--sessions`` sessions (several sizes: one server each) are
created with ``auto_start`` and the plan ``--template`` (``crud``), 8 requests at a time,
as ``engine_sessions.py`` creates them, and the database is polled (every 50 ms) until
every session is planned (its phase EXECUTING).

Reported per size: the seconds to create them all and until all were planned (from the
first create), and the CPU used in that window in % of one core and per session, for
the server's processes, this process (the agents' beats and the creates) and the whole
machine (PostgreSQL and the kernel included): what a fleet's start costs, which
``engine_sessions.py``'s tasks/s over a whole run include.

Checked (exit 1 otherwise): every session planned, none ended.

Run with ``.venv/bin/python bench/fleet_start.py [--sessions 50,200,500] [--workers 2]
[--json]``. Exits 1 when a check failed, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import asyncpg
from rich.console import Console
from rich.table import Table

from engine_sessions import NoopAgent, Tally, _sizes, create_sessions
from harness.engine_server import engine_server
from harness.main import bench_main, bench_parser
from harness.postgres import add_postgres_args
from harness.redis import add_redis_arg
from harness.report import add_columns, progress
from harness.server import agent_client, http_client
from harness.stats import CpuSnapshot, CpuUse, cpu_model
from industrial_orchestrator.domain.sessions.options import TEMPLATE_CHOICES

POLL_SECONDS = 0.05
CREATE_CONCURRENCY = 8
REQUEST_TIMEOUT_S = 60.0


@dataclass
class SizeResult:
    sessions: int
    create_seconds: float
    planned_seconds: float | None
    """First create to the last session planned; None when not all were."""
    planned: int
    ended: int
    cpu_percent: CpuUse
    cpu_ms_per_session: CpuUse

    @property
    def problems(self) -> int:
        return (self.sessions - self.planned) + self.ended


@dataclass
class Report:
    cpu_model: str
    cores: int
    workers: int
    agents: int
    template: str
    results: list[SizeResult] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(result.problems for result in self.results)


async def _counts(db: asyncpg.Connection) -> tuple[int, int]:
    row = await db.fetchrow(
        "SELECT count(*) FILTER (WHERE phase = 'EXECUTING') AS planned,"
        " count(*) FILTER (WHERE finished_at IS NOT NULL) AS ended FROM sessions"
    )
    assert row is not None
    return int(row["planned"]), int(row["ended"])


async def _drive(
    args: argparse.Namespace, size: int, base_url: str, pid: int, dsn: str
) -> SizeResult:
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(http_client(base_url, REQUEST_TIMEOUT_S))
        tally = Tally()
        agents = [
            NoopAgent(
                await stack.enter_async_context(agent_client(base_url, REQUEST_TIMEOUT_S)),
                f"bench-idle-{index:02d}",
                tally,
            )
            for index in range(args.agents)
        ]
        for agent in agents:
            await agent.register()
        beats = [asyncio.create_task(agent.beat()) for agent in agents]
        db = await asyncpg.connect(dsn)
        stack.push_async_callback(db.close)
        try:
            before = await asyncio.to_thread(CpuSnapshot.take, pid)
            started = time.monotonic()
            await create_sessions(http, size, args.template, CREATE_CONCURRENCY, None)
            created = time.monotonic() - started
            deadline = started + args.timeout
            planned, ended = await _counts(db)
            while planned < size and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECONDS)
                planned, ended = await _counts(db)
            window = time.monotonic() - started
            after = await asyncio.to_thread(CpuSnapshot.take, pid)
        finally:
            for beat in beats:
                beat.cancel()
            await asyncio.gather(*beats, return_exceptions=True)
    percent = CpuUse.between(before, after, window)
    per_session = CpuUse(
        *(
            None if value is None else round(value * window * 10 / size, 1)
            for value in (percent.server, percent.loadgen, percent.machine)
        )
    )
    return SizeResult(
        sessions=size,
        create_seconds=round(created, 2),
        planned_seconds=round(window, 2) if planned >= size else None,
        planned=planned,
        ended=ended,
        cpu_percent=percent,
        cpu_ms_per_session=per_session,
    )


def _one_size(args: argparse.Namespace, size: int) -> SizeResult:
    slots = str(max(100, size))
    with engine_server(args, "fleet", workers=args.workers, MAX_CONCURRENT_SESSIONS=slots) as up:
        base_url, pid, database_url = up
        progress.print(
            f"{size} sessions: server {base_url} up (pid {pid}, {args.workers} processes)"
        )
        result = asyncio.run(_drive(args, size, base_url, pid, database_url))
        progress.print(
            f"{size} sessions: created in {result.create_seconds:.1f} s, "
            f"{result.planned} planned in {result.planned_seconds} s"
        )
        return result


def run(args: argparse.Namespace) -> Report:
    report = Report(cpu_model(), os.cpu_count() or 0, args.workers, args.agents, args.template)
    for size in args.sessions:
        report.results.append(_one_size(args, size))
    return report


def _cell(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def print_tables(report: Report) -> None:
    table = Table(
        title=f"Starting a fleet ({report.template} plans, {report.workers} server processes, "
        f"{report.agents} idle agents; {report.cpu_model}, {report.cores} cores)"
    )
    add_columns(
        table,
        "sessions",
        "created in",
        "planned in",
        "planned",
        "CPU % server / this / machine",
        "CPU ms a session: server / this / machine",
    )
    for result in report.results:
        pct, per = result.cpu_percent, result.cpu_ms_per_session
        table.add_row(
            str(result.sessions),
            _cell(result.create_seconds, " s"),
            _cell(result.planned_seconds, " s"),
            f"{result.planned} of {result.sessions}",
            f"{_cell(pct.server)} / {_cell(pct.loadgen)} / {_cell(pct.machine)}",
            f"{_cell(per.server)} / {_cell(per.loadgen)} / {_cell(per.machine)}",
        )
    Console().print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--sessions",
        type=_sizes,
        default=[50, 200, 500],
        help="sizes, one server each (50,200,500)",
    )
    parser.add_argument("--workers", type=int, default=2, help="`serve --workers` (2)")
    parser.add_argument("--agents", type=int, default=8, help="idle EAP agents (8)")
    parser.add_argument(
        "--template", choices=TEMPLATE_CHOICES, default="crud", help="the sessions' plan (crud)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the plans (300)"
    )
    add_postgres_args(parser)
    add_redis_arg(parser)
    args = parser.parse_args(argv)
    if min(*args.sessions, args.workers, args.agents) < 1:
        parser.error("--sessions, --workers and --agents must be at least 1")
    return args


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
