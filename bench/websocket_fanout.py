"""WebSocket fan-out of a real ``orchestrator serve``: latency to N watchers, and events/s.

What it measures
----------------
One storage backend per run (``--backend``): SQLite in a fresh ``ORCHESTRATOR_HOME``
(default), or PostgreSQL in a fresh ``io_bench_server_<random>`` database with the Redis
event bus (``REDIS_HOST=127.0.0.1``, a ``REDIS_PREFIX`` of its own). The server is started
by ``bench/harness/server.py`` (free 127.0.0.1 port, ``MAX_CONCURRENT_SESSIONS=100000``,
``LOG_LEVEL=WARNING``, temporary working directory, orchestrator variables of the calling
shell removed). The script creates one session, starts it, and opens ``--clients``
WebSocket connections (``--connect-concurrency`` handshakes at a time) that all watch it,
on ``/ws/sessions/{id}?since=<its last seq>`` or, with ``--stream global``, on
``/ws?since=<its last event id>`` (every event, filtered here by ``session_id``). An
explicit ``since`` makes every client start at the same point whenever the server
subscribes it. A log line is then appended and every client must receive it before
anything is measured. Then:

1. **Fan-out latency.** ``--transitions`` pause / resume requests, one at a time. For each,
   the time from just before the request is sent, and from when its response arrives
   (the transition has committed), until the last client has received the
   ``session.transition`` event (matched by the ``version`` of the response, which the
   event carries in its payload); the next request waits for that. Reported: p50, p95,
   p99 and max (nearest rank), and the request's own latency.
2. **Sustained events/s.** ``--producers`` concurrent clients POST
   ``/api/v1/sessions/{id}/logs`` (one short line, one ``session.log`` event each) as
   fast as the server answers for ``--duration`` seconds. Reported: events committed/s
   (201 answers), frames delivered/s across all clients during the window and until the
   last client had the last event, how long that drain took after the producers
   stopped, and whether every client got every event: count, no gap and no repeat in
   ``seq``, and the close code of any connection the server closed (4008: dropped as
   too slow).

Arrival times are taken when this process reads the frame, so they include its own
scheduling: one asyncio loop (uvloop) reads all N connections, on the same two cores
as the server. The CPU table shows how busy each side was. Messages are uncompressed
unless ``--deflate`` (browsers negotiate permessage-deflate; it costs CPU on both ends).

The server's output is scanned for errors at the end (``--server-log PATH`` keeps a
copy). The server is stopped, connections closed and the database dropped on the way out,
also on failure or Ctrl-C. Every wait has a ``--timeout``.

Run with ``.venv/bin/python bench/websocket_fanout.py [--clients 1000] [--transitions 50]
[--duration 10] [--producers 4] [--backend sqlite|postgresql] [--stream session|global]
[--json]``. Exits 1 when a request failed, an event was not delivered to every client in
time or a connection was lost, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from harness.main import BenchError, bench_main, bench_parser
from harness.postgres import Postgres, add_postgres_args, temporary_database
from harness.redis import add_redis_arg, redis_env
from harness.report import add_columns, cpu_cells, fmt_ms, measure_table, progress, red_if
from harness.server import (
    SERVER_LOG,
    SESSIONS_PATH,
    http_client,
    last_exception_line,
    log_record,
    running_server,
    server_env,
    server_output,
    temporary_workdir,
)
from harness.stats import ERROR_SAMPLES, CpuSnapshot, CpuUse, Errors, cpu_model, percentile

# Each stream from just after the session's last event: ``since`` is a seq on the session's
# stream, a global event id on the global one.
STREAM_PATHS = {
    "session": "/ws/sessions/{session_id}?since={seq}",
    "global": "/ws?since={id}",
}
BACKENDS = ("sqlite", "postgresql")
TRANSITION = "session.transition"
# Each request's expected outcome: the session status it must leave.
VERBS = (("pause", "PAUSED"), ("resume", "RUNNING"))
LOG_LINE_BYTES = 100
PROMPT = "Benchmark session: no agent is attached; only the lifecycle is exercised."

CONNECT_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
EVENTS_PAGE = 1000
MAX_ERRORS = 1000
# File descriptors beyond one per client: the server's database and Redis connections,
# the producers, logs, and the interpreter's own.
SPARE_FDS = 200
SERVER_LOG_PROBLEMS = ("error", "exception", "traceback", "critical")


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, values_ms: list[float]) -> Percentiles:
        ordered = sorted(values_ms)
        return cls(
            len(ordered),
            percentile(ordered, 0.50),
            percentile(ordered, 0.95),
            percentile(ordered, 0.99),
            round(ordered[-1], 3) if ordered else None,
        )


@dataclass(frozen=True)
class TransitionSample:
    verb: str
    version: int | None
    seq: int | None
    request_ms: float
    from_request_ms: float | None
    from_response_ms: float | None
    # Clients connected when the request was sent that had not received the event when
    # the wait ended (timeout) or that never will (lost meanwhile).
    missing: int


@dataclass
class Connections:
    requested: int
    connected: int
    seconds: float
    failures: int
    failure_samples: list[str]
    lost: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    lost_samples: list[str] = field(default_factory=list)


@dataclass
class FanoutResult:
    transitions: int
    delivered_to_all: int
    from_request: Percentiles
    from_response: Percentiles
    request: Percentiles
    errors: int
    error_samples: list[str]
    timeouts: int
    seconds: float
    cpu_percent: CpuUse
    samples: list[TransitionSample]


@dataclass
class SustainedResult:
    seconds: float
    producers: int
    requests: int
    events_committed: int
    committed_per_s: float
    delivered_in_window: int
    delivered_in_window_per_s: float
    delivered: int
    delivered_per_s: float
    drained: bool
    drain_s: float | None
    clients_complete: int
    clients_incomplete: int
    events_missed: int
    gaps: int
    repeats: int
    errors: int
    error_samples: list[str]
    cpu_percent: CpuUse


@dataclass
class Report:
    cpu_model: str
    cores: int
    backend: str
    stream: str
    clients: int
    transitions: int
    duration: float
    producers: int
    deflate: bool
    connections: Connections | None = None
    fanout: FanoutResult | None = None
    sustained: SustainedResult | None = None
    server_log_lines: int = 0
    server_problems: list[str] = field(default_factory=list)
    seconds_total: float = 0.0

    @property
    def problems(self) -> int:
        count = 0
        if self.connections is not None:
            count += self.connections.failures + self.connections.lost
        if self.fanout is not None:
            count += self.fanout.errors + self.fanout.timeouts
        if self.sustained is not None:
            count += self.sustained.errors + self.sustained.clients_incomplete
        return count


# -- the watchers ----------------------------------------------------------------------------


class Tally:
    """Counts what the watchers have seen, so that a wait wakes only when it may be over.

    A watcher calls ``transition_seen`` and ``advanced`` for every event, in O(1); the
    waiting side checks the exact condition over all watchers only when the counts say
    it may hold (or a watcher was lost).
    """

    def __init__(self) -> None:
        self.live = 0
        self.transitions: defaultdict[int, int] = defaultdict(int)
        self.seq_of_version: dict[int, int] = {}
        self.target_seq: int | None = None
        self.at_target = 0
        self.changed = asyncio.Event()

    def joined(self) -> None:
        self.live += 1

    def lost(self) -> None:
        self.live -= 1
        self.changed.set()

    def transition_seen(self, version: int, seq: int | None) -> None:
        self.transitions[version] += 1
        if seq is not None:
            self.seq_of_version.setdefault(version, seq)
        if self.transitions[version] >= self.live:
            self.changed.set()

    def advanced(self, before: int, after: int) -> None:
        target = self.target_seq
        if target is not None and before < target <= after:
            self.at_target += 1
            if self.at_target >= self.live:
                self.changed.set()

    async def until(self, maybe: Callable[[], bool], exact: Callable[[], bool]) -> None:
        """Return once ``exact()`` holds, testing it only when ``maybe()`` does."""
        while not (maybe() and exact()):
            self.changed.clear()
            await self.changed.wait()


async def within(seconds: float, waiting: Awaitable[None]) -> bool:
    """Await ``waiting`` for at most ``seconds``: False if it took longer."""
    try:
        async with asyncio.timeout(seconds):
            await waiting
    except TimeoutError:
        return False
    return True


class Watcher:
    """One WebSocket client: records what it receives of the watched session."""

    def __init__(self, session_id: str, tally: Tally, connection: ClientConnection) -> None:
        self.session_id = session_id
        self.tally = tally
        self.connection = connection
        self.first_seq: int | None = None
        self.last_seq = 0
        self.last_at = 0.0
        self.frames = 0
        self.gaps = 0
        self.repeats = 0
        self.transition_at: dict[int, float] = {}
        self.closing = False
        self.lost = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.failure: str | None = None
        self.task = asyncio.create_task(self._read())

    def has(self, seq: int) -> bool:
        return self.lost or self.last_seq >= seq

    def saw(self, version: int) -> bool:
        return self.lost or version in self.transition_at

    async def _read(self) -> None:
        try:
            async for message in self.connection:
                received = time.monotonic()
                event = json.loads(message)
                if event.get("session_id") == self.session_id:
                    self._record(event, received)
        except ConnectionClosed:
            pass
        except (ValueError, KeyError, TypeError) as exc:  # not the JSON we expect
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self.close_code = self.connection.close_code
            self.close_reason = self.connection.close_reason
            if not self.closing:
                self.lost = True
                self.tally.lost()

    def _record(self, event: dict[str, Any], received: float) -> None:
        seq = event.get("seq")
        if isinstance(seq, int):
            before = self.last_seq
            if self.first_seq is None:
                self.first_seq = seq
            elif seq <= before:
                self.repeats += 1
                return
            elif seq > before + 1:
                self.gaps += seq - before - 1
            self.last_seq = seq
            self.last_at = received
            self.frames += 1
            self.tally.advanced(before, seq)
        if event.get("type") == TRANSITION:
            version = event["payload"]["version"]
            if isinstance(version, int) and version not in self.transition_at:
                self.transition_at[version] = received
                self.tally.transition_seen(version, seq if isinstance(seq, int) else None)

    async def close(self) -> None:
        self.closing = True
        await self.connection.close()
        await self.task


class Watchers:
    """The N connections to one stream, opened a bounded number at a time."""

    def __init__(self, url: str, session_id: str, deflate: bool) -> None:
        self.url = url
        self.session_id = session_id
        self.deflate = deflate
        self.tally = Tally()
        self.all: list[Watcher] = []
        self.failures = Errors()

    @property
    def live(self) -> list[Watcher]:
        return [watcher for watcher in self.all if not watcher.lost]

    async def open(self, count: int, concurrency: int) -> float:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                try:
                    connection = await connect(
                        self.url,
                        proxy=None,
                        compression="deflate" if self.deflate else None,
                        open_timeout=CONNECT_TIMEOUT_S,
                        ping_interval=None,  # the server pings; ours would only add noise
                        close_timeout=CLOSE_TIMEOUT_S,
                    )
                except (OSError, TimeoutError, WebSocketException) as exc:
                    self.failures.add(f"{type(exc).__name__}: {exc}")
                    return
            self.tally.joined()
            self.all.append(Watcher(self.session_id, self.tally, connection))

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return time.monotonic() - started

    async def all_reached(self, seq: int) -> None:
        """Wait until every live watcher has received the session's event ``seq``."""
        self.tally.target_seq = seq
        self.tally.at_target = sum(1 for watcher in self.live if watcher.last_seq >= seq)
        await self.tally.until(
            lambda: self.tally.at_target >= self.tally.live,
            lambda: all(watcher.has(seq) for watcher in self.all),
        )

    async def all_saw(self, version: int) -> None:
        """Wait until every live watcher has received the transition to ``version``."""
        await self.tally.until(
            lambda: self.tally.transitions[version] >= self.tally.live,
            lambda: all(watcher.saw(version) for watcher in self.all),
        )

    def connections(self, requested: int, seconds: float) -> Connections:
        lost = [watcher for watcher in self.all if watcher.lost]
        return Connections(
            requested=requested,
            connected=len(self.all),
            seconds=round(seconds, 3),
            failures=self.failures.count,
            failure_samples=self.failures.samples,
            lost=len(lost),
            close_codes=dict(Counter(str(watcher.close_code) for watcher in lost)),
            lost_samples=[
                f"close {w.close_code} {w.close_reason or ''}".strip()
                + (f"; {w.failure}" if w.failure else "")
                for w in lost[:ERROR_SAMPLES]
            ],
        )

    async def close(self, concurrency: int) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(watcher: Watcher) -> None:
            async with gate:
                await watcher.close()

        await asyncio.gather(*(one(watcher) for watcher in self.all))


# -- HTTP ------------------------------------------------------------------------------------


def _describe(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:200]}"


def _expect(response: httpx.Response, status: str | None = None) -> dict[str, Any]:
    if not response.is_success:
        raise BenchError(f"{response.request.method} {response.request.url}: {_describe(response)}")
    body: dict[str, Any] = response.json()
    if status is not None and body.get("status") != status:
        raise BenchError(f"{response.request.url}: status {body.get('status')!r}, not {status}")
    return body


async def running_session(http: httpx.AsyncClient) -> str:
    """A new session, started: its id."""
    body = {"title": "websocket fan-out bench", "initial_prompt": PROMPT}
    session = _expect(await http.post(SESSIONS_PATH, json=body), "PENDING")
    _expect(await http.post(f"{SESSIONS_PATH}/{session['id']}/start"), "RUNNING")
    return str(session["id"])


@dataclass(frozen=True)
class Cursor:
    """Where a session's log ends: its last event's ``seq`` and global ``id``."""

    seq: int
    id: int


async def last_event(http: httpx.AsyncClient, session_id: str, after: int = 0) -> Cursor:
    """The session's last event after ``seq`` ``after`` (which must exist), from the REST log."""
    last: dict[str, Any] | None = None
    while True:
        response = await http.get(
            f"{SESSIONS_PATH}/{session_id}/events", params={"since": after, "limit": EVENTS_PAGE}
        )
        items: list[dict[str, Any]] = _expect(response)["items"]
        if items:
            last = items[-1]
            after = int(last["seq"])
        if len(items) < EVENTS_PAGE:
            break
    if last is None:
        raise BenchError(f"session {session_id} has no event after seq {after}")
    return Cursor(seq=int(last["seq"]), id=int(last["id"]))


async def append_line(http: httpx.AsyncClient, session_id: str, text: str) -> httpx.Response:
    body = {"stream": "stdout", "text": text}
    return await http.post(f"{SESSIONS_PATH}/{session_id}/logs", json=body)


# -- 1. fan-out latency ----------------------------------------------------------------------


async def measure_fanout(
    http: httpx.AsyncClient,
    watchers: Watchers,
    session_id: str,
    server_pid: int,
    count: int,
    patience: float,
) -> FanoutResult:
    errors = Errors()
    samples: list[TransitionSample] = []
    timeouts = 0
    before = CpuSnapshot.take(server_pid)
    started = time.monotonic()
    for index in range(count):
        verb, status = VERBS[index % len(VERBS)]
        watching = list(watchers.live)
        sent = time.monotonic()
        try:
            response = await http.post(f"{SESSIONS_PATH}/{session_id}/{verb}")
        except httpx.HTTPError as exc:
            errors.add(f"{verb}: {type(exc).__name__}: {exc}")
            continue
        answered = time.monotonic()
        request_ms = (answered - sent) * 1000.0
        body = response.json() if response.is_success else {}
        if not response.is_success or body.get("status") != status:
            errors.add(f"{verb}: {_describe(response)}")
            continue
        version = int(body["version"])
        if not await within(patience, watchers.all_saw(version)):
            timeouts += 1
        arrivals = [w.transition_at[version] for w in watching if version in w.transition_at]
        last = max(arrivals) if len(arrivals) == len(watching) and arrivals else None
        samples.append(
            TransitionSample(
                verb=verb,
                version=version,
                seq=watchers.tally.seq_of_version.get(version),
                request_ms=round(request_ms, 3),
                from_request_ms=None if last is None else round((last - sent) * 1000.0, 3),
                from_response_ms=None if last is None else round((last - answered) * 1000.0, 3),
                missing=len(watching) - len(arrivals),
            )
        )
    seconds = time.monotonic() - started
    cpu = CpuUse.between(before, CpuSnapshot.take(server_pid), seconds)
    complete = [s for s in samples if s.from_request_ms is not None]
    return FanoutResult(
        transitions=count,
        delivered_to_all=len(complete),
        from_request=Percentiles.of(
            [s.from_request_ms for s in complete if s.from_request_ms is not None]
        ),
        from_response=Percentiles.of(
            [s.from_response_ms for s in complete if s.from_response_ms is not None]
        ),
        request=Percentiles.of([s.request_ms for s in samples]),
        errors=errors.count,
        error_samples=errors.samples,
        timeouts=timeouts,
        seconds=round(seconds, 3),
        cpu_percent=cpu,
        samples=samples,
    )


# -- 2. sustained events/s -------------------------------------------------------------------


async def _producer(
    base_url: str, session_id: str, index: int, stop_at: float, committed: list[int], errors: Errors
) -> int:
    """Append lines until ``stop_at``; returns how many requests were answered 201."""
    requests = 0
    pad = "x" * LOG_LINE_BYTES
    async with http_client(base_url) as http:
        line = 0
        while time.monotonic() < stop_at and errors.count < MAX_ERRORS:
            line += 1
            text = f"producer {index} line {line} {pad}"[:LOG_LINE_BYTES]
            try:
                response = await append_line(http, session_id, text)
            except httpx.HTTPError as exc:
                errors.add(f"logs: {type(exc).__name__}: {exc}")
                continue
            if response.status_code != 201:
                errors.add(f"logs: {_describe(response)}")
                continue
            requests += 1
            committed[index] += int(response.json()["events"])
    return requests


async def measure_sustained(
    http: httpx.AsyncClient,
    watchers: Watchers,
    base_url: str,
    session_id: str,
    server_pid: int,
    producers: int,
    duration: float,
    patience: float,
) -> SustainedResult:
    start_seq = (await last_event(http, session_id)).seq
    frames_before = {id(w): w.frames for w in watchers.all}
    committed = [0] * producers
    errors = Errors()
    in_window = 0

    def delivered() -> int:
        return sum(w.frames - frames_before.get(id(w), w.frames) for w in watchers.all)

    async def at_window_end() -> None:
        nonlocal in_window
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        in_window = delivered()

    cpu_before = CpuSnapshot.take(server_pid)
    started = time.monotonic()
    stop_at = started + duration
    window = asyncio.create_task(at_window_end())
    requests = await asyncio.gather(
        *(
            _producer(base_url, session_id, index, stop_at, committed, errors)
            for index in range(producers)
        )
    )
    stopped = time.monotonic()
    await window
    total = sum(committed)
    final_seq = (await last_event(http, session_id, start_seq + max(0, total - 1))).seq
    drained = await within(patience, watchers.all_reached(final_seq))
    drained_by = max((w.last_at for w in watchers.all if w.last_seq >= final_seq), default=None)
    end = time.monotonic()
    cpu = CpuUse.between(cpu_before, CpuSnapshot.take(server_pid), end - started)

    expected = final_seq - start_seq
    complete = 0
    missed = 0
    for watcher in watchers.all:
        received = watcher.frames - frames_before.get(id(watcher), watcher.frames)
        if not watcher.lost and received == expected and watcher.gaps == 0:
            complete += 1
        missed += max(0, expected - received)
    delivered_total = delivered()
    span = (drained_by if drained_by is not None else end) - started
    return SustainedResult(
        seconds=round(stopped - started, 3),
        producers=producers,
        requests=sum(requests),
        events_committed=total,
        committed_per_s=round(total / (stopped - started), 1),
        delivered_in_window=in_window,
        delivered_in_window_per_s=round(in_window / duration, 1),
        delivered=delivered_total,
        delivered_per_s=round(delivered_total / span, 1) if span > 0 else 0.0,
        drained=drained,
        drain_s=None if drained_by is None or not drained else round(drained_by - stopped, 3),
        clients_complete=complete,
        clients_incomplete=len(watchers.all) - complete,
        events_missed=missed,
        gaps=sum(w.gaps for w in watchers.all),
        repeats=sum(w.repeats for w in watchers.all),
        errors=errors.count,
        error_samples=errors.samples,
        cpu_percent=cpu,
    )


# -- the run ---------------------------------------------------------------------------------


def raise_fd_limit(clients: int) -> None:
    """Make room for one descriptor per client (the server inherits the limit too)."""
    needed = clients + SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(
            f"{clients} clients need about {needed} open files but the hard limit is {hard} "
            f"(ulimit -Hn): raise it (as root: ulimit -n {needed}, or limits.conf) "
            "or use fewer --clients"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    progress.print(f"raised the open-file limit from {soft} to {hard}")


async def drive(args: argparse.Namespace, report: Report, base_url: str, server_pid: int) -> None:
    async with http_client(base_url) as http:
        session_id = await running_session(http)
        start = await last_event(http, session_id)
        path = STREAM_PATHS[args.stream].format(session_id=session_id, seq=start.seq, id=start.id)
        url = f"ws://{base_url.removeprefix('http://')}{path}"
        watchers = Watchers(url, session_id, args.deflate)
        try:
            progress.print(f"opening {args.clients} connections to {path}")
            opened_in = await watchers.open(args.clients, args.connect_concurrency)
            report.connections = watchers.connections(args.clients, opened_in)
            if not watchers.all:
                raise BenchError(
                    f"none of the {args.clients} connections to {url} opened, "
                    f"e.g. {watchers.failures.samples[0]}"
                )
            progress.print(
                f"{len(watchers.all)} connected in {opened_in:.1f} s "
                f"({watchers.failures.count} failed); waiting for every client to get a line"
            )
            _expect(await append_line(http, session_id, "bench: ready?"))
            ready_seq = (await last_event(http, session_id, start.seq)).seq
            if not await within(args.timeout, watchers.all_reached(ready_seq)):
                late = [w for w in watchers.all if not w.has(ready_seq)]
                raise BenchError(
                    f"{len(late)} of {len(watchers.all)} clients did not get event seq "
                    f"{ready_seq} within {args.timeout:g} s "
                    f"({sum(1 for w in late if w.frames == 0)} of them got no event at all)"
                )

            progress.print(f"fan-out: {args.transitions} transitions, one at a time")
            report.fanout = await measure_fanout(
                http, watchers, session_id, server_pid, args.transitions, args.timeout
            )
            progress.print(
                f"sustained: {args.producers} producers for {args.duration:g} s "
                f"(fan-out took {report.fanout.seconds:.1f} s)"
            )
            report.sustained = await measure_sustained(
                http,
                watchers,
                base_url,
                session_id,
                server_pid,
                args.producers,
                args.duration,
                args.timeout,
            )
            report.connections = watchers.connections(args.clients, opened_in)
        finally:
            await watchers.close(args.connect_concurrency)


def _read_server_log(workdir: Path, keep: Path | None, report: Report) -> None:
    log = workdir / SERVER_LOG
    if keep is not None and log.exists():
        shutil.copyfile(log, keep)
    output = server_output(workdir)
    report.server_log_lines = len(output)
    problems = [line for line in output if any(w in line.lower() for w in SERVER_LOG_PROBLEMS)]
    report.server_problems = [_log_summary(line) for line in problems[: ERROR_SAMPLES * 4]]


def _log_summary(line: str) -> str:
    """One line of the server's output, shortened: a JSON record becomes its level, logger,
    event and the last line of its traceback."""
    record = log_record(line)
    if record is None:
        return line[:300]
    exception = last_exception_line(record)
    parts = [
        str(record.get("timestamp", "")),
        str(record.get("level", "")),
        f"{record.get('logger', '')}:",
        str(record.get("event", "")),
    ]
    if exception:
        parts.append(f"({exception})")
    return " ".join(part for part in parts if part)[:300]


def run(args: argparse.Namespace) -> Report:
    raise_fd_limit(args.clients)
    report = Report(
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 0,
        backend=args.backend,
        stream=args.stream,
        clients=args.clients,
        transitions=args.transitions,
        duration=args.duration,
        producers=args.producers,
        deflate=args.deflate,
    )
    started = time.monotonic()
    with temporary_workdir() as workdir:
        try:
            with ExitStack() as stack:
                overrides: dict[str, str] = {}
                if args.backend == "postgresql":
                    redis = redis_env(args.redis_port)
                    pg = Postgres.from_args(args)
                    database = stack.enter_context(temporary_database(pg, "server"))
                    overrides.update(DATABASE_URL=pg.url(database), **redis)
                env = server_env(workdir / "home", **overrides)
                base_url, pid = stack.enter_context(running_server(env, workdir))
                progress.print(f"{args.backend}: server {base_url} up (pid {pid})")
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    runner.run(drive(args, report, base_url, pid))
        finally:
            _read_server_log(workdir, args.server_log, report)
    report.seconds_total = round(time.monotonic() - started, 1)
    return report


# -- output ----------------------------------------------------------------------------------


def print_tables(report: Report) -> None:
    out = Console()
    connections = report.connections
    fanout = report.fanout
    sustained = report.sustained
    heading = (
        f"{report.backend}, {report.clients} clients on the {report.stream} stream"
        f"{' (deflate)' if report.deflate else ''}"
    )
    caption = f"{report.cpu_model}, {report.cores} cores; the run took {report.seconds_total:g} s"

    if fanout is not None:
        latency = Table(
            title=(
                f"Fan-out of one transition to every client, ms ({heading}; "
                f"{fanout.delivered_to_all} of {fanout.transitions} delivered to all)"
            ),
            caption=caption,
        )
        add_columns(latency, "from", "count", "p50", "p95", "p99", "max")
        for label, values in (
            ("request sent -> last client", fanout.from_request),
            ("response received -> last client", fanout.from_response),
            ("request sent -> response (HTTP)", fanout.request),
        ):
            latency.add_row(
                label,
                str(values.count),
                fmt_ms(values.p50_ms),
                fmt_ms(values.p95_ms),
                fmt_ms(values.p99_ms),
                fmt_ms(values.max_ms),
            )
        out.print(latency)

    if sustained is not None:
        rows = [
            ("log requests answered 201", str(sustained.requests)),
            ("events committed", str(sustained.events_committed)),
            ("events committed/s", f"{sustained.committed_per_s:.1f}"),
            ("frames delivered in the window", str(sustained.delivered_in_window)),
            ("frames delivered/s in the window", f"{sustained.delivered_in_window_per_s:.1f}"),
            ("frames delivered/s until drained", f"{sustained.delivered_per_s:.1f}"),
            (
                "drain after the producers stopped",
                "[red]not drained[/]" if not sustained.drained else f"{sustained.drain_s} s",
            ),
            ("clients with every event", f"{sustained.clients_complete}"),
            ("clients missing events", red_if(sustained.clients_incomplete)),
            ("events missed (all clients)", red_if(sustained.events_missed)),
            ("seq gaps / repeats", f"{sustained.gaps} / {sustained.repeats}"),
            ("request errors", red_if(sustained.errors)),
        ]
        title = f"Sustained: {sustained.producers} producers for {sustained.seconds:g} s"
        out.print(measure_table(title, rows))

    usage = Table(title=f"CPU (% of one core; the machine has {report.cores * 100}%)")
    add_columns(usage, "phase", "seconds", "server", "load generator", "whole machine")
    for phase, seconds, cpu in (
        ("fan-out", fanout.seconds if fanout else None, fanout.cpu_percent if fanout else None),
        (
            "sustained",
            sustained.seconds if sustained else None,
            sustained.cpu_percent if sustained else None,
        ),
    ):
        if cpu is not None:
            usage.add_row(
                phase,
                f"{seconds:g}" if seconds is not None else "-",
                *cpu_cells(cpu),
            )
    out.print(usage)

    if connections is not None:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(connections.close_codes.items()))
        out.print(
            f"connections: {connections.connected} of {connections.requested} opened in "
            f"{connections.seconds:g} s, {connections.failures} failed, "
            f"{connections.lost} closed by the server or dropped"
            + (f" (close codes {codes})" if codes else ""),
            highlight=False,
        )
        for sample in connections.failure_samples:
            out.print(f"[red]connect error[/] {sample}", markup=True, highlight=False)
        for sample in connections.lost_samples:
            out.print(f"[red]connection lost[/] {sample}", markup=True, highlight=False)
    for label, samples in (
        ("fan-out error", fanout.error_samples if fanout else []),
        ("sustained error", sustained.error_samples if sustained else []),
    ):
        for sample in samples:
            out.print(f"[red]{label}[/] {sample}", markup=True, highlight=False)
    out.print(
        f"server output after start-up: {report.server_log_lines} lines, "
        f"{len(report.server_problems)} mentioning an error",
        highlight=False,
    )
    for line in report.server_problems:
        out.print(f"  [red]server[/] {line}", markup=True, highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--clients", type=int, default=1000, help="WebSocket clients (1000)")
    parser.add_argument(
        "--transitions", type=int, default=50, help="pause/resume requests timed (50)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of sustained log appends (10)"
    )
    parser.add_argument("--producers", type=int, default=4, help="concurrent log producers (4)")
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite", help="storage (sqlite)")
    parser.add_argument(
        "--stream",
        choices=tuple(STREAM_PATHS),
        default="session",
        help="session: /ws/sessions/{id}; global: /ws, every event (session)",
    )
    parser.add_argument(
        "--connect-concurrency", type=int, default=100, help="handshakes at a time (100)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for a fan-out or drain (60)"
    )
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--server-log", type=Path, help="copy the server's output to this file")
    add_postgres_args(parser)
    add_redis_arg(parser)
    args = parser.parse_args(argv)
    if min(args.clients, args.producers, args.connect_concurrency) < 1 or args.transitions < 0:
        parser.error("--clients, --producers and --connect-concurrency must be at least 1")
    if args.duration <= 0 or args.timeout <= 0:
        parser.error("--duration and --timeout must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        run,
        parse_args(argv),
        print_tables,
        failures="problems",
        cleaned_up="server stopped, database dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
