"""Session-transition throughput of a real ``orchestrator serve``, against the machine's ceiling.

What it measures
----------------
For each storage backend, SQLite (a fresh ``ORCHESTRATOR_HOME`` in a temporary directory)
and PostgreSQL (a fresh ``io_bench_server_<random>`` database), the script starts a real
``orchestrator serve`` subprocess on a free 127.0.0.1 port, waits for ``GET /health`` to
answer 200, and then drives it over HTTP with ``--clients`` concurrent clients (one
``httpx.AsyncClient`` and one connection each). Every client loops over one session's life:

    POST /api/v1/sessions                                   (creation, counted apart)
    POST /api/v1/sessions/{id}/start|pause|resume|complete  (4 transitions)

After ``--warmup`` seconds the measurement window of ``--seconds`` opens; a request counts
when it completes inside the window. Reported per backend: transitions/s (successful
start/pause/resume/complete), creations/s, p50/p99 latency over every request in the
window (creations included), errors (any non-2xx, transport failure, or a 2xx whose
session is not in the expected state, at any time including the warm-up), and the CPU
used during the window by the server process, by this load generator and by the whole
machine (in % of one core; the last one also holds PostgreSQL's work and anything else
running, so a figure far above the other two flags a noisy measurement).

The ceiling is ``pgbench -b simple-update`` (five statements in one transaction, as
``pgbench -i -s 1`` sets up) with the same number of clients on another fresh database
(``io_bench_pgbench_<random>``),
so ``transitions/s / pgbench tps`` says how much of the machine's write-transaction rate
one orchestrator process turns into session transitions.

Servers run with ``MAX_CONCURRENT_SESSIONS=100000`` (``start`` never queues) and
``LOG_LEVEL=WARNING``, in a temporary working directory so no ``.env`` is read; every
orchestrator variable of the calling environment is removed. Servers are stopped and the
databases dropped on the way out, also on failure or Ctrl-C. Each request has a timeout
and the load stops after the window (or after ``MAX_ERRORS`` errors).

Run with ``make bench`` (which starts PostgreSQL first) or
``.venv/bin/python bench/transitions.py [--clients 16] [--seconds 10] [--json]``.
Exits 1 when any request errored, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from harness.main import BenchError, bench_main, bench_parser
from harness.postgres import Postgres, add_postgres_args, temporary_database
from harness.report import add_columns, cpu_cells, fmt_ms, progress
from harness.server import (
    REQUEST_TIMEOUT_S,
    SESSIONS_PATH,
    http_client,
    running_server,
    server_env,
    temporary_workdir,
)
from harness.stats import CpuSnapshot, CpuUse, Errors, cpu_model, percentile

VERBS = ("start", "pause", "resume", "complete")
KINDS = ("create", *VERBS)
# The state each request must leave the session in.
EXPECTED_STATUS = {
    "create": "PENDING",
    "start": "RUNNING",
    "pause": "PAUSED",
    "resume": "RUNNING",
    "complete": "COMPLETED",
}
PROMPT = "Benchmark session: no agent is attached; only the lifecycle is exercised."

MAX_ERRORS = 1000

PGBENCH_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
PGBENCH_LATENCY = re.compile(r"latency average = ([0-9.]+) ms")

# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    count: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass
class BackendResult:
    backend: str
    clients: int
    seconds: float
    transitions: int
    creations: int
    transitions_per_s: float
    creations_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    error_samples: list[str]
    cpu_percent: CpuUse
    per_request: dict[str, Latency]
    ratio_to_pgbench: float | None = None


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    latency_avg_ms: float | None
    clients: int
    threads: int
    seconds: int


@dataclass
class Report:
    cpu_model: str
    cores: int
    clients: int
    seconds: int
    warmup: float
    backends: list[BackendResult] = field(default_factory=list)
    pgbench: PgbenchResult | None = None

    @property
    def errors(self) -> int:
        return sum(result.errors for result in self.backends)


def latency_of(values: list[float]) -> Latency:
    ordered = sorted(values)
    return Latency(len(ordered), percentile(ordered, 0.50), percentile(ordered, 0.99))


# -- load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: float
    end: float


class Recorder:
    """Latencies of the requests completed inside the window; errors from the first request."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.latencies_ms: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.errors = Errors()

    @property
    def exhausted(self) -> bool:
        return self.errors.count >= MAX_ERRORS

    def success(self, kind: str, started: float, finished: float) -> None:
        if self.window.start <= finished <= self.window.end:
            self.latencies_ms[kind].append((finished - started) * 1000.0)

    def failure(self, kind: str, detail: str) -> None:
        self.errors.add(f"{kind}: {detail}")


async def _post(
    client: httpx.AsyncClient,
    recorder: Recorder,
    kind: str,
    path: str,
    body: dict[str, str] | None,
) -> dict[str, Any] | None:
    """One request; the session it returns, or None after recording the error."""
    started = time.monotonic()
    try:
        response = await client.post(path, json=body)
    except httpx.HTTPError as exc:
        recorder.failure(kind, f"{type(exc).__name__}: {exc}")
        return None
    finished = time.monotonic()
    if not response.is_success:
        recorder.failure(kind, f"HTTP {response.status_code}: {response.text[:200]}")
        return None
    session: dict[str, Any] = response.json()
    if session.get("status") != EXPECTED_STATUS[kind]:
        recorder.failure(kind, f"HTTP {response.status_code} but status {session.get('status')!r}")
        return None
    recorder.success(kind, started, finished)
    return session


async def _client(base_url: str, index: int, recorder: Recorder, stop_at: float) -> None:
    """Create -> start -> pause -> resume -> complete, over and over until ``stop_at``."""
    async with http_client(base_url) as client:
        cycle = 0
        while time.monotonic() < stop_at and not recorder.exhausted:
            cycle += 1
            body = {"title": f"bench client {index} cycle {cycle}", "initial_prompt": PROMPT}
            session = await _post(client, recorder, "create", SESSIONS_PATH, body)
            if session is None:
                continue
            for verb in VERBS:
                if time.monotonic() >= stop_at or recorder.exhausted:
                    return
                path = f"{SESSIONS_PATH}/{session['id']}/{verb}"
                if await _post(client, recorder, verb, path, None) is None:
                    break


async def _cpu_over(window: Window, server_pid: int) -> CpuUse:
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    before = await asyncio.to_thread(CpuSnapshot.take, server_pid)
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    after = await asyncio.to_thread(CpuSnapshot.take, server_pid)
    return CpuUse.between(before, after, window.end - window.start)


async def drive(
    backend: str, base_url: str, server_pid: int, clients: int, warmup: float, seconds: float
) -> BackendResult:
    now = time.monotonic()
    window = Window(now + warmup, now + warmup + seconds)
    recorder = Recorder(window)
    cpu = asyncio.create_task(_cpu_over(window, server_pid))
    load = asyncio.gather(
        *(_client(base_url, index, recorder, window.end) for index in range(clients))
    )
    # In-flight requests end within their own timeout once the window closes.
    await asyncio.wait_for(load, warmup + seconds + REQUEST_TIMEOUT_S + 5.0)
    cpu_use = await cpu

    per_request = {kind: latency_of(values) for kind, values in recorder.latencies_ms.items()}
    everything = latency_of([v for values in recorder.latencies_ms.values() for v in values])
    transitions = sum(per_request[verb].count for verb in VERBS)
    creations = per_request["create"].count
    return BackendResult(
        backend=backend,
        clients=clients,
        seconds=seconds,
        transitions=transitions,
        creations=creations,
        transitions_per_s=round(transitions / seconds, 2),
        creations_per_s=round(creations / seconds, 2),
        p50_ms=everything.p50_ms,
        p99_ms=everything.p99_ms,
        errors=recorder.errors.count,
        error_samples=recorder.errors.samples,
        cpu_percent=cpu_use,
        per_request=per_request,
    )


def run_pgbench(pg: Postgres, clients: int, seconds: int) -> PgbenchResult:
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise BenchError("pgbench is not installed (apt-get install postgresql-client)")
    threads = min(2, clients)
    with temporary_database(pg, "pgbench") as database:
        steps = [
            ([pgbench, "-i", "-s", "1", "-q", *pg.cli_args(), database], 300.0),
            (
                [
                    pgbench,
                    "-b",
                    "simple-update",
                    "-c",
                    str(clients),
                    "-j",
                    str(threads),
                    "-T",
                    str(seconds),
                    "-n",
                    *pg.cli_args(),
                    database,
                ],
                seconds + 120.0,
            ),
        ]
        for command, limit in steps:
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=limit, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise BenchError(f"{' '.join(command)} took over {limit:.0f} s") from exc
            if done.returncode != 0:
                raise BenchError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    tps = PGBENCH_TPS.search(done.stdout)
    if tps is None:
        raise BenchError(f"no tps in pgbench's output:\n{done.stdout}")
    latency = PGBENCH_LATENCY.search(done.stdout)
    return PgbenchResult(
        tps=float(tps.group(1)),
        latency_avg_ms=float(latency.group(1)) if latency else None,
        clients=clients,
        threads=threads,
        seconds=seconds,
    )


# -- the run ---------------------------------------------------------------------------------


def bench_backend(
    backend: str, args: argparse.Namespace, pg: Postgres | None = None
) -> BackendResult:
    with ExitStack() as stack:
        workdir = stack.enter_context(temporary_workdir())
        overrides = {}
        if pg is not None:
            database = stack.enter_context(temporary_database(pg, "server"))
            overrides["DATABASE_URL"] = pg.url(database)
        env = server_env(workdir / "home", **overrides)
        base_url, pid = stack.enter_context(running_server(env, workdir))
        progress.print(
            f"{backend}: server {base_url} up; {args.clients} clients, "
            f"{args.warmup:g} s warm-up + {args.seconds} s measured"
        )
        result = asyncio.run(drive(backend, base_url, pid, args.clients, args.warmup, args.seconds))
        if result.errors:
            progress.print(f"[red]{backend}: {result.errors} errors[/]", markup=True)
    return result


def run(args: argparse.Namespace) -> Report:
    report = Report(
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 0,
        clients=args.clients,
        seconds=args.seconds,
        warmup=args.warmup,
    )
    pg = Postgres.from_args(args)
    report.backends.append(bench_backend("SQLite", args))
    report.backends.append(bench_backend("PostgreSQL", args, pg))
    progress.print(f"pgbench: simple-update, {args.clients} clients, {args.seconds} s")
    report.pgbench = run_pgbench(pg, args.clients, args.seconds)
    for result in report.backends:
        result.ratio_to_pgbench = round(result.transitions_per_s / report.pgbench.tps, 4)
    return report


# -- output ----------------------------------------------------------------------------------


def print_tables(report: Report) -> None:
    out = Console()
    pgbench = report.pgbench
    summary = Table(
        title=(
            f"Session transitions through the HTTP API: {report.clients} clients, "
            f"{report.seconds} s after {report.warmup:g} s warm-up"
        ),
        caption=(
            f"{report.cpu_model}, {report.cores} cores. pgbench: -b simple-update "
            f"-c {report.clients} -j {pgbench.threads if pgbench else '-'} -T {report.seconds}; "
            "its p50 column is the average latency"
        ),
    )
    add_columns(summary, "backend", "transitions/s", "p50 ms", "p99 ms", "errors", "÷ pgbench tps")
    for result in report.backends:
        summary.add_row(
            result.backend,
            f"{result.transitions_per_s:.1f}",
            fmt_ms(result.p50_ms),
            fmt_ms(result.p99_ms),
            f"[red]{result.errors}[/]" if result.errors else "0",
            "-" if result.ratio_to_pgbench is None else f"{result.ratio_to_pgbench:.3f}",
        )
    if pgbench is not None:
        summary.add_section()
        summary.add_row(
            "pgbench (tps)",
            f"{pgbench.tps:.1f}",
            fmt_ms(pgbench.latency_avg_ms) + " avg",
            "-",
            "-",
            "1.000",
        )
    out.print(summary)

    detail = Table(title="Per request (inside the window)")
    add_columns(detail, "backend", "request", "count", "p50 ms", "p99 ms", left=2)
    for result in report.backends:
        for kind, latency in result.per_request.items():
            detail.add_row(
                result.backend,
                kind,
                str(latency.count),
                fmt_ms(latency.p50_ms),
                fmt_ms(latency.p99_ms),
            )
        detail.add_section()
    out.print(detail)

    usage = Table(
        title=f"CPU during the window (% of one core; the machine has {report.cores * 100}%)"
    )
    add_columns(usage, "backend", "creations/s", "server", "load generator", "whole machine")
    for result in report.backends:
        usage.add_row(
            result.backend, f"{result.creations_per_s:.1f}", *cpu_cells(result.cpu_percent)
        )
    out.print(usage)

    for result in report.backends:
        for sample in result.error_samples:
            out.print(f"[red]{result.backend} error[/] {sample}", markup=True, highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    add_postgres_args(parser)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds < 1 or args.warmup < 0:
        parser.error("--clients and --seconds must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        run,
        parse_args(argv),
        print_tables,
        failures="errors",
        cleaned_up="servers stopped, databases dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
