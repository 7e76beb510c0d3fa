"""What a fleet of waiting sessions costs the server while nothing happens to them.

What it measures
----------------
For each size of ``--sessions`` (``50,200``: one server per size), the script starts a
real ``orchestrator serve`` on PostgreSQL + Redis (a fresh ``io_bench_idle_<random>``
database and a ``REDIS_PREFIX`` of its own) with the session engine on and every other
setting at its default. One external agent registers over the External Agent Protocol
with room for every task; the sessions are created with ``auto_start`` and the
``single`` plan (one agent task each), and the agent takes every task and sits on it,
beating every ``heartbeat_interval_seconds`` the server asks for with the tasks it
holds, as a busy agent does. Once every session is RUNNING with its task leased (and
a few seconds more, for the last plans' checkpoints), the CPU of the server process and
of the machine is measured over ``--seconds`` (60), in % of one core.

Nothing happens to the sessions during the window but the agent's heartbeats: the
figure is what the runtime spends on a fleet that waits, which should not grow with
the fleet. Checked at the end (exit 1 otherwise): every session still RUNNING with its
task RUNNING. The events committed during the window are counted by type: the timers that
fell due in it (a periodic checkpoint every ``CHECKPOINT_INTERVAL_SECONDS`` per session)
are work the fleet really asks for, and show there.

Run with ``.venv/bin/python bench/idle_sessions.py [--sessions 50,200] [--seconds 60]
[--settle 5] [--checkpoint-interval 300] [--workers 1] [--json]``. Exits 1 when a check
failed, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from harness.main import BenchError, bench_main, bench_parser
from harness.postgres import Postgres, add_postgres_args, temporary_database
from harness.redis import add_redis_arg, redis_env
from harness.report import fmt_pct, progress
from harness.server import (
    EAP,
    REQUEST_TIMEOUT_S,
    SESSIONS_PATH,
    http_client,
    running_server,
    server_env,
    temporary_workdir,
)
from harness.stats import CpuSnapshot, CpuUse, cpu_model

SETTLE_SECONDS = 5.0
CREATE_CONCURRENCY = 8
PULL_WAIT_SECONDS = 5.0


@dataclass
class SizeResult:
    sessions: int
    setup_seconds: float = 0.0
    cpu: CpuUse | None = None
    not_running: int = 0
    window_events: dict[str, int] = field(default_factory=dict)
    """The events committed during the window, by type: what the server did then."""


@dataclass
class Report:
    cpu_model: str
    cores: int
    seconds: float
    sizes: list[SizeResult] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(size.not_running for size in self.sizes)


async def _created(http: httpx.AsyncClient, count: int) -> list[str]:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(n: int) -> str:
        async with gate:
            response = await http.post(
                SESSIONS_PATH,
                json={
                    "title": f"idle {n}",
                    "initial_prompt": "Wait for the agent",
                    "template": "single",
                    "auto_start": True,
                },
            )
            if response.status_code != 201:
                raise BenchError(f"create: {response.status_code} {response.text[:200]}")
            return str(response.json()["id"])

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def _measure(
    base_url: str, pid: int, size: SizeResult, seconds: float, settle: float
) -> None:
    started = time.monotonic()
    async with http_client(base_url, PULL_WAIT_SECONDS + REQUEST_TIMEOUT_S) as http:
        registered = await http.post(
            f"{EAP}/register",
            json={
                "protocol_version": "1.0",
                "name": "sitter",
                "version": "1",
                "agent_type": "implementer",
                "capabilities": ["code_generation"],
                "max_concurrent_tasks": size.sessions,
            },
        )
        if registered.status_code != 201:
            raise BenchError(f"register: {registered.status_code} {registered.text[:200]}")
        agent: dict[str, Any] = registered.json()
        headers = {
            "Authorization": f"Bearer {agent['auth_token']}",
            "X-Agent-ID": agent["agent_id"],
        }
        held: list[str] = []
        stop = asyncio.Event()

        async def beat() -> None:
            # From registration on: creating and planning a large fleet takes longer
            # than the agent's offline threshold, and an agent found OFFLINE is given
            # no task. Busy (taking no more) once it holds every task; the list is read
            # at each beat, so a task just pulled is named.
            while not stop.is_set():
                status = "busy" if len(held) >= size.sessions else "healthy"
                ack = await http.post(
                    f"{EAP}/{agent['agent_id']}/heartbeat",
                    json={"status": status, "task_ids": list(held)},
                    headers=headers,
                )
                if ack.status_code == 200:
                    headers["Authorization"] = f"Bearer {ack.json()['auth_token']}"
                    interval = float(ack.json()["heartbeat_interval_seconds"])
                else:
                    interval = 1.0
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

        beating = asyncio.create_task(beat())
        await _created(http, size.sessions)
        while len(held) < size.sessions:
            pulled = await http.post(
                f"{EAP}/{agent['agent_id']}/tasks/next",
                params={"wait_seconds": PULL_WAIT_SECONDS},
                headers=headers,
            )
            if pulled.status_code == 200:
                held.append(pulled.json()["task_id"])
            elif pulled.status_code != 204:
                raise BenchError(f"pull: {pulled.status_code} {pulled.text[:200]}")
        progress.print(f"{size.sessions} sessions: every task held; settling")
        await asyncio.sleep(settle)
        size.setup_seconds = round(time.monotonic() - started, 1)
        progress.print(f"{size.sessions} sessions: measuring {seconds:g} s")
        log_end = await _log_end(http)
        before, window = CpuSnapshot.take(pid), time.monotonic()
        await asyncio.sleep(seconds)
        after = CpuSnapshot.take(pid)
        size.cpu = CpuUse.between(before, after, time.monotonic() - window)
        size.window_events = await _events_after(http, log_end)
        stop.set()
        await beating
        stats = (await http.get(f"{SESSIONS_PATH}/stats")).json()
        size.not_running = size.sessions - int(stats["by_state"].get("RUNNING", 0))


async def _log_end(http: httpx.AsyncClient) -> int:
    """The newest event's id (read before the window: reading costs the server)."""
    since = 0
    while True:
        page = (await http.get("/api/v1/events", params={"since": since, "limit": 1000})).json()
        if not page["items"]:
            return since
        since = int(page["next_since"])


async def _events_after(http: httpx.AsyncClient, since: int) -> dict[str, int]:
    """The events after id ``since``, counted by type (the periodic checkpoints that
    fell due in the window, say)."""
    counted: dict[str, int] = {}
    while True:
        page = (await http.get("/api/v1/events", params={"since": since, "limit": 1000})).json()
        for event in page["items"]:
            counted[event["type"]] = counted.get(event["type"], 0) + 1
        if not page["items"]:
            return counted
        since = int(page["next_since"])


def _bench_size(count: int, args: argparse.Namespace) -> SizeResult:
    size = SizeResult(count)
    with ExitStack() as stack:
        workdir = stack.enter_context(temporary_workdir())
        redis = redis_env(args.redis_port)
        pg = Postgres.from_args(args)
        database = stack.enter_context(temporary_database(pg, "idle"))
        env = server_env(
            workdir / "home",
            DATABASE_URL=pg.url(database),
            **redis,
            ENGINE_ENABLED="true",
            **(
                {"CHECKPOINT_INTERVAL_SECONDS": f"{args.checkpoint_interval:g}"}
                if args.checkpoint_interval is not None
                else {}
            ),
        )
        base_url, pid = stack.enter_context(running_server(env, workdir, workers=args.workers))
        asyncio.run(_measure(base_url, pid, size, args.seconds, args.settle))
    return size


def run(args: argparse.Namespace) -> Report:
    report = Report(cpu_model(), os.cpu_count() or 0, args.seconds)
    for count in args.sessions:
        report.sizes.append(_bench_size(count, args))
    return report


def print_tables(report: Report) -> None:
    out = Console()
    table = Table(
        title=f"Idle running sessions, PostgreSQL + Redis ({report.cpu_model}, "
        f"{report.cores} cores): CPU over {report.seconds:g} s, % of one core"
    )
    for column in ("sessions", "setup", "server CPU", "machine CPU", "not RUNNING"):
        table.add_column(column, justify="right")
    table.add_column("events in the window")
    for size in report.sizes:
        table.add_row(
            str(size.sessions),
            f"{size.setup_seconds:g} s",
            fmt_pct(size.cpu.server if size.cpu else None),
            fmt_pct(size.cpu.machine if size.cpu else None),
            str(size.not_running),
            ", ".join(f"{n} {kind}" for kind, n in sorted(size.window_events.items())) or "none",
        )
    out.print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--sessions",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[50, 200],
        help="sizes, comma-separated, one server each (50,200)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (60)")
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        help=f"seconds between every task held and the window ({SETTLE_SECONDS:g}); past "
        "CHECKPOINT_INTERVAL_SECONDS (300) the sessions' periodic checkpoints fall in it",
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=float,
        default=None,
        help="CHECKPOINT_INTERVAL_SECONDS for the server (its default, 300): shorter, the "
        "periodic checkpoints' cost shows in a shorter run",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="`serve --workers`; CPU counts them all (1)"
    )
    add_postgres_args(parser)
    add_redis_arg(parser)
    args = parser.parse_args(argv)
    if min(args.sessions) < 1 or args.seconds <= 0 or args.settle < 0:
        parser.error("--sessions must be at least 1, --seconds positive, --settle not negative")
    if args.checkpoint_interval is not None and args.checkpoint_interval <= 0:
        parser.error("--checkpoint-interval must be positive")
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
