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
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from industrial_orchestrator.config import Settings

LOOPBACK = "127.0.0.1"
SESSIONS_PATH = "/api/v1/sessions"
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

REQUEST_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SERVER_START_ATTEMPTS = 3
MAX_ERRORS = 1000
ERROR_SAMPLES = 5
DB_PREFIX = "io_bench_"

PGBENCH_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
PGBENCH_LATENCY = re.compile(r"latency average = ([0-9.]+) ms")

progress = Console(stderr=True, highlight=False, soft_wrap=True)


class BenchError(Exception):
    """The benchmark could not run (server did not start, database unreachable, ...)."""


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


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list, in 0.001 ms steps."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return round(sorted_values[rank - 1], 3)


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
        self.errors = 0
        self.error_samples: list[str] = []

    @property
    def exhausted(self) -> bool:
        return self.errors >= MAX_ERRORS

    def success(self, kind: str, started: float, finished: float) -> None:
        if self.window.start <= finished <= self.window.end:
            self.latencies_ms[kind].append((finished - started) * 1000.0)

    def failure(self, kind: str, detail: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(f"{kind}: {detail}")


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
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_S, trust_env=False
    ) as client:
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


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its live descendants (the processes of
    ``serve --workers N``) from /proc (Linux), or None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # After "pid (comm)": state is fields[0], so utime (14) and stime (15) are 11 and 12.
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_process_cpu_seconds(int(child)) or 0.0 for child in children)


def _machine_busy_seconds() -> float | None:
    """CPU time all cores spent on anything but idle and iowait since boot, or None."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0]
    except OSError:
        return None
    ticks = [int(value) for value in first.split()[1:]]
    idle = ticks[3] + ticks[4]
    # guest and guest_nice (9, 10) are already counted in user and nice.
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    server: float | None
    loadgen: float
    machine: float | None

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        return cls(_process_cpu_seconds(server_pid), time.process_time(), _machine_busy_seconds())


@dataclass(frozen=True)
class CpuUse:
    """CPU used during the window, in % of one core (the machine's can reach cores x 100)."""

    server: float | None
    loadgen: float
    machine: float | None

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot, seconds: float) -> CpuUse:
        def percent(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else round(100 * (end - start) / seconds, 1)

        return cls(
            percent(before.server, after.server),
            round(100 * (after.loadgen - before.loadgen) / seconds, 1),
            percent(before.machine, after.machine),
        )


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
        errors=recorder.errors,
        error_samples=recorder.error_samples,
        cpu_percent=cpu_use,
        per_request=per_request,
    )


# -- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _orchestrator_executable() -> str:
    beside = Path(sys.executable).with_name("orchestrator")
    if beside.exists():
        return str(beside)
    found = shutil.which("orchestrator")
    if found is None:
        raise BenchError("no `orchestrator` command; install the project (make .venv/.dev)")
    return found


def server_env(home: Path, **overrides: str) -> dict[str, str]:
    """The caller's environment without any orchestrator setting, plus the bench's own."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {name: value for name, value in os.environ.items() if name.upper() not in ours}
    env.update(
        ORCHESTRATOR_HOME=str(home),
        LOG_LEVEL="WARNING",
        MAX_CONCURRENT_SESSIONS="100000",
        **overrides,
    )
    return env


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str) -> bool:
    """True once /health answers 200; False if the process exited first."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get("/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise BenchError(f"{base_url}/health did not answer 200 within {HEALTH_TIMEOUT_S:.0f} s")


@contextmanager
def running_server(
    env: dict[str, str], workdir: Path, *, workers: int = 1
) -> Iterator[tuple[str, int]]:
    """A healthy ``orchestrator serve --workers N`` (one process unless asked) on a free
    loopback port: yields (base URL, pid of ``serve``; its CPU counts its processes')."""
    command = _orchestrator_executable()
    log_path = workdir / "server.log"
    for _attempt in range(SERVER_START_ATTEMPTS):
        port = _free_port()
        base_url = f"http://{LOOPBACK}:{port}"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    command,
                    "serve",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                ],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if _wait_healthy(process, base_url):
                yield base_url, process.pid
                return
        finally:
            _stop(process)
        # Exited before answering: most likely the port was taken meanwhile; try another.
    raise BenchError(f"the server did not start; its output ends with:\n{_tail(log_path)}")


# -- PostgreSQL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    admin_db: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def cli_args(self) -> list[str]:
        return ["-h", LOOPBACK, "-p", str(self.port), "-U", self.user]


async def _admin(pg: Postgres, *statements: str) -> None:
    connection = await asyncpg.connect(pg.url(pg.admin_db), timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def temporary_database(pg: Postgres, purpose: str) -> Iterator[str]:
    """A new empty database, dropped (with any connection to it) on the way out."""
    name = f"{DB_PREFIX}{purpose}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(pg, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"cannot create database {name} at {pg.url(pg.admin_db)}: {exc}") from exc
    try:
        yield name
    finally:
        try:
            asyncio.run(
                _admin(
                    pg,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
                    f'DROP DATABASE IF EXISTS "{name}"',
                )
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise BenchError(f"could not drop database {name}; drop it by hand: {exc}") from exc


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
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="io_bench_")))
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def run(args: argparse.Namespace) -> Report:
    report = Report(
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 0,
        clients=args.clients,
        seconds=args.seconds,
        warmup=args.warmup,
    )
    pg = Postgres(port=args.pg_port, user=args.pg_user, admin_db=args.pg_admin_db)
    report.backends.append(bench_backend("SQLite", args))
    report.backends.append(bench_backend("PostgreSQL", args, pg))
    progress.print(f"pgbench: simple-update, {args.clients} clients, {args.seconds} s")
    report.pgbench = run_pgbench(pg, args.clients, args.seconds)
    for result in report.backends:
        result.ratio_to_pgbench = round(result.transitions_per_s / report.pgbench.tps, 4)
    return report


# -- output ----------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


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
    for column in ("backend", "transitions/s", "p50 ms", "p99 ms", "errors", "÷ pgbench tps"):
        summary.add_column(column, justify="left" if column == "backend" else "right")
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
    for column in ("backend", "request", "count", "p50 ms", "p99 ms"):
        detail.add_column(column, justify="left" if column in {"backend", "request"} else "right")
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
    for column in ("backend", "creations/s", "server", "load generator", "whole machine"):
        usage.add_column(column, justify="left" if column == "backend" else "right")
    for result in report.backends:
        usage.add_row(
            result.backend,
            f"{result.creations_per_s:.1f}",
            fmt_pct(result.cpu_percent.server),
            fmt_pct(result.cpu_percent.loadgen),
            fmt_pct(result.cpu_percent.machine),
        )
    out.print(usage)

    for result in report.backends:
        for sample in result.error_samples:
            out.print(f"[red]{result.backend} error[/] {sample}", markup=True, highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL port on 127.0.0.1")
    parser.add_argument("--pg-user", default="postgres", help="PostgreSQL role (trust auth)")
    parser.add_argument(
        "--pg-admin-db", default="test", help="existing database to connect to for CREATE DATABASE"
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds < 1 or args.warmup < 0:
        parser.error("--clients and --seconds must be at least 1, --warmup at least 0")
    return args


R = TypeVar("R")


def _as_ctrl_c(_signum: int, _frame: object) -> None:
    signal.raise_signal(signal.SIGINT)


def bench_main(
    run: Callable[[], R],
    *,
    as_json: bool,
    print_tables: Callable[[R], None],
    failures: Callable[[R], int],
    failures_key: str,
    cleaned_up: str,
) -> int:
    """Run a benchmark the way every script here does: Ctrl-C and SIGTERM unwind (also
    where a shell ignored SIGINT), so servers are stopped and databases dropped; exit 2
    when it could not run, 1 when it ran with failures, else 0."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _as_ctrl_c)
    try:
        report = run()
    except BenchError as exc:
        progress.print(f"[bold red]bench failed:[/] {exc}", markup=True)
        return 2
    except KeyboardInterrupt:
        progress.print(f"[bold red]interrupted[/]: {cleaned_up}", markup=True)
        return 130
    if as_json:
        print(json.dumps(asdict(report) | {failures_key: failures(report)}, indent=2))  # type: ignore[call-overload]
    else:
        print_tables(report)
    return 1 if failures(report) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return bench_main(
        lambda: run(args),
        as_json=args.json,
        print_tables=print_tables,
        failures=lambda report: report.errors,
        failures_key="errors",
        cleaned_up="servers stopped, databases dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
