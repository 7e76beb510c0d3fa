"""An agent's two requests a task through HTTP, without the sessions around them.

What it measures
----------------
The External Agent Protocol's path alone, on a real ``orchestrator serve`` (PostgreSQL +
Redis, a fresh ``io_bench_eap_<random>`` database, ``serve --workers`` from ``--workers``,
the engine on but with no session to step): ``--tasks`` (600) READY tasks outside any
session are made through the API first; then, for each count of ``--agents`` (1,8: one
server each), that many external agents, each a loop in this process with a client of
its own, ask for a task (``tasks/next`` with ``wait_seconds=0``) and report it completed
until no task is left.

Reported per count of agents: tasks/s, and the CPU used while they drain the tasks in
milliseconds per task: the server's processes, this process (the agents) and the whole
machine (PostgreSQL and the kernel included). Set beside ``engine_sessions.py``'s CPU
per task, it says how much of a task's cost is its agent's two requests and how much the
sessions around them (creating and planning them, the engine's steps and checkpoints).
These runs are short and repeat well, so they also compare two versions of the request
path better than a whole run does on a machine whose speed drifts.

Checked (exit 1 otherwise): every task COMPLETED, each handed out once.

Run with ``.venv/bin/python bench/eap_requests.py [--agents 1,8] [--tasks 600]
[--workers 1] [--json]``. Exits 1 when a check failed, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from engine_sessions import _sizes
from harness.engine_server import engine_server
from harness.main import BenchError, bench_main, bench_parser
from harness.postgres import add_postgres_args
from harness.redis import add_redis_arg
from harness.report import add_columns, progress
from harness.server import http_client
from harness.stats import CpuSnapshot, cpu_model

EAP = "/api/v1/agents/external"
CAPABILITY = "code_generation"
CREATE_CONCURRENCY = 8


@dataclass
class AgentsResult:
    agents: int
    tasks: int
    completed: int
    handed_out_twice: int
    seconds: float
    tasks_per_s: float
    cpu_ms_per_task: dict[str, float | None]

    @property
    def problems(self) -> int:
        return (self.tasks - self.completed) + self.handed_out_twice


@dataclass
class Report:
    cpu_model: str
    cores: int
    workers: int
    results: list[AgentsResult] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(result.problems for result in self.results)


async def _register(http: httpx.AsyncClient, index: int) -> tuple[str, dict[str, str]]:
    response = await http.post(
        f"{EAP}/register",
        json={
            "protocol_version": "1.0",
            "name": f"bench-eap-{index:02d}",
            "version": "bench",
            "agent_type": "implementer",
            "capabilities": [CAPABILITY],
            "max_concurrent_tasks": 1,
        },
    )
    if response.status_code != 201:
        raise BenchError(f"registering an agent: HTTP {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    agent_id = str(body["agent_id"])
    return agent_id, {"Authorization": f"Bearer {body['auth_token']}", "X-Agent-ID": agent_id}


async def _ready_tasks(http: httpx.AsyncClient, count: int) -> None:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            made = await http.post(
                "/api/v1/tasks",
                json={
                    "title": f"task {index}",
                    "task_type": "code_generation",
                    "required_capabilities": [CAPABILITY],
                },
            )
            if made.status_code != 201:
                raise BenchError(f"creating a task: HTTP {made.status_code} {made.text}")
            moved = await http.patch(f"/api/v1/tasks/{made.json()['id']}", json={"status": "READY"})
            if moved.status_code != 200:
                raise BenchError(f"readying a task: HTTP {moved.status_code} {moved.text}")

    await asyncio.gather(*(one(index) for index in range(count)))


async def _work(base_url: str, agent_id: str, headers: dict[str, str], taken: list[str]) -> None:
    """Ask and report until nothing is left."""
    async with http_client(base_url) as http:
        while True:
            asked = await http.post(
                f"{EAP}/{agent_id}/tasks/next", params={"wait_seconds": 0}, headers=headers
            )
            if asked.status_code == 204:
                return
            if asked.status_code != 200:
                raise BenchError(f"tasks/next: HTTP {asked.status_code} {asked.text}")
            assignment = asked.json()
            task_id = assignment["task_id"]
            taken.append(task_id)
            reported = await http.post(
                f"{EAP}/{agent_id}/tasks/{task_id}/result",
                headers=headers,
                json={
                    "task_id": task_id,
                    "attempt": assignment["attempt"],
                    "status": "completed",
                    "output_data": {"summary": "no-op"},
                    "execution_time_ms": 0,
                },
            )
            if reported.status_code != 200:
                raise BenchError(f"result: HTTP {reported.status_code} {reported.text}")


async def _drive(args: argparse.Namespace, agents: int, base_url: str, pid: int) -> AgentsResult:
    async with http_client(base_url) as http:
        registered = [await _register(http, index) for index in range(agents)]
        await _ready_tasks(http, args.tasks)
        taken: list[str] = []
        before = await asyncio.to_thread(CpuSnapshot.take, pid)
        started = time.monotonic()
        await asyncio.gather(
            *(_work(base_url, agent_id, headers, taken) for agent_id, headers in registered)
        )
        seconds = time.monotonic() - started
        after = await asyncio.to_thread(CpuSnapshot.take, pid)
        listed = await http.get("/api/v1/tasks", params={"status": "COMPLETED", "limit": 1})
        completed = int(listed.json()["total"]) if listed.status_code == 200 else 0
    done = max(1, len(taken))

    def per_task(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round(1000 * (end - start) / done, 2)

    return AgentsResult(
        agents=agents,
        tasks=args.tasks,
        completed=completed,
        handed_out_twice=len(taken) - len(set(taken)),
        seconds=round(seconds, 2),
        tasks_per_s=round(len(taken) / seconds, 1) if seconds else 0.0,
        cpu_ms_per_task={
            "server": per_task(before.server, after.server),
            "loadgen": per_task(before.loadgen, after.loadgen),
            "machine": per_task(before.machine, after.machine),
        },
    )


def _one_count(args: argparse.Namespace, agents: int) -> AgentsResult:
    with engine_server(args, "eap", workers=args.workers) as (base_url, pid, _):
        progress.print(f"{agents} agent(s): server {base_url} up (pid {pid})")
        result = asyncio.run(_drive(args, agents, base_url, pid))
        progress.print(f"{agents} agent(s): {result.tasks_per_s} tasks/s")
        return result


def run(args: argparse.Namespace) -> Report:
    report = Report(cpu_model(), os.cpu_count() or 0, args.workers)
    for agents in args.agents:
        report.results.append(_one_count(args, agents))
    return report


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def print_tables(report: Report) -> None:
    table = Table(
        title=f"An agent's two requests a task, no sessions ({report.workers} server "
        f"processes; {report.cpu_model}, {report.cores} cores)"
    )
    add_columns(
        table, "agents", "tasks", "tasks/s", "CPU ms a task: server / agents / machine", "checks"
    )
    for result in report.results:
        cpu = result.cpu_ms_per_task
        table.add_row(
            str(result.agents),
            str(result.tasks),
            f"{result.tasks_per_s:,.1f}",
            f"{_cell(cpu['server'])} / {_cell(cpu['loadgen'])} / {_cell(cpu['machine'])}",
            f"{result.completed} completed, {result.handed_out_twice} handed out twice",
        )
    Console().print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--agents", type=_sizes, default=[1, 8], help="agents, one server each (1,8)"
    )
    parser.add_argument("--tasks", type=int, default=600, help="READY tasks to drain (600)")
    parser.add_argument("--workers", type=int, default=1, help="`serve --workers` (1)")
    add_postgres_args(parser)
    add_redis_arg(parser)
    args = parser.parse_args(argv)
    if min(*args.agents, args.tasks, args.workers) < 1:
        parser.error("--agents, --tasks and --workers must be at least 1")
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
