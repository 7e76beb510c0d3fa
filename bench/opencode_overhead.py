"""What the orchestrator adds to a task over the bare OpenCode round trip.

What it measures
----------------
One scripted model (``python -m industrial_orchestrator.testing.scripted_model``: a process
of its own, as a model provider is a service of its own; in this process the app's work
would slow its answers) and one real ``opencode serve`` (HOME and XDG dirs of its own,
the scripted model as its only provider, ``scripted/coder``) serve every run. Every run
sends the same prompt, a ``@write`` of a small file, which the model turns into one
``write`` tool call and then a "Done" answer: two model requests per run, whatever the
mode.

* **bare**, the baseline: straight to OpenCode with ``OpenCodeClient``, in a fresh
  directory (a copy of a small git repository, made before the clock starts; the
  orchestrator works in a fresh worktree per session, and OpenCode's first turn in a
  directory costs it some set-up): create a session, open the event stream, send the
  prompt, wait for ``session.idle`` of that session. Timed from the create call to the
  idle event.
* **bare, same directory**, for reference: the same, always in one directory (the file
  removed between runs), so OpenCode's per-directory set-up is paid once, in the
  warm-up. The difference to **bare** is that set-up.
* **orchestrated**: the real app (``api.app.create_app``: engine and internal OpenCode
  fleet on, ``ENGINE_TICK_SECONDS=0.05``, ``OPENCODE_POLL_SECONDS=0.5``, logs at
  WARNING) in this process over ASGI, the shared OpenCode server as ``OPENCODE_HOST``:
  ``POST /api/v1/sessions`` (template ``single``, ``auto_start``, the repository as the
  workspace), then ``GET /api/v1/sessions/{id}`` every 20 ms until it is terminal. The
  engine plans the one task, makes the session's worktree, leases the task to an
  internal agent, runs the OpenCode turn, records the result and diff, checkpoints and
  completes the session. Timed from the POST to the poll that sees it COMPLETED (so up
  to 20 ms late). Its steps are read from the session's events afterwards (their ``at``,
  the server's clock when the event's transaction began): the session's created_at to
  the task leased, to the OpenCode session created, to the task COMPLETED, to the
  session COMPLETED; and the rest of the measured time (the POST and the poll delay).

The runs are sequential and interleaved, one of each mode per round (bare, bare in the
same directory, orchestrated), so that a machine getting busier or OpenCode warming up
weighs on every mode alike; the app idles (its engine ticking) during the bare runs.
``--warmup`` (2) rounds are not counted, then ``--tasks`` (10) are. Reported: median
and p90 (nearest rank) per mode, the added latency (orchestrated median - bare median),
the ratio of the medians, the orchestrated steps, and the 1-minute load average before
and after (other work on the machine shows there).

Storage is SQLite (a fresh ``ORCHESTRATOR_HOME``), or with ``--backend postgresql`` a
fresh ``io_bench_opencode_<random>`` PostgreSQL database, with Redis under a prefix of
its own (the production pairing).

Checked (exit 1 otherwise): every run wrote the file with the expected content (in the
bare directory, or in the session's worktree), and every orchestrated session
COMPLETED; a bare turn with a ``session.error`` or any run past ``--timeout`` fails.
OpenCode is stopped and the database dropped on the way out, also on failure or Ctrl-C.

Needs the OpenCode binary (``make .opencode/node_modules/opencode-linux-x64/bin/opencode``,
or ``OPENCODE_BIN``). Run with ``.venv/bin/python bench/opencode_overhead.py [--tasks 10]
[--warmup 2] [--backend sqlite|postgresql] [--json]``. Exits 1 when a check failed, 2
when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from harness.main import BenchError, bench_main, bench_parser
from harness.postgres import Postgres, add_postgres_args, temporary_database
from harness.redis import add_redis_arg, check_redis, redis_settings
from harness.report import add_columns, fmt_ms, progress
from harness.server import LOOPBACK, SESSIONS_PATH, temporary_workdir
from harness.stats import cpu_model, percentile
from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import ConfigurationError, Settings, load_settings
from industrial_orchestrator.executors.opencode.client import (
    ModelRef,
    OpenCodeClient,
    OpenCodeError,
)
from industrial_orchestrator.logs import configure_logging
from industrial_orchestrator.testing.scripted_model import LISTENING as MODEL_LISTENING
from industrial_orchestrator.testing.scripted_model import opencode_config

BACKENDS = ("sqlite", "postgresql")
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL + Redis"}
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OPENCODE = REPO_ROOT / ".opencode/node_modules/opencode-linux-x64/bin/opencode"
MODEL = "scripted/coder"
FILE_NAME = "hello.txt"
FILE_CONTENT = "hello from the overhead bench\n"
PROMPT = f"Write a greeting file.\n@write {FILE_NAME}\n```\n{FILE_CONTENT}```\n"
POLL_SECONDS = 0.02
ENGINE_TICK_SECONDS = 0.05
OPENCODE_POLL_SECONDS = 0.5
OPENCODE_LISTENING = "opencode server listening on "
OPENCODE_START_TIMEOUT_S = 60.0
OPENCODE_STOP_GRACE_S = 3.0
MODEL_START_TIMEOUT_S = 30.0
STREAM_OPEN_TIMEOUT_S = 15.0
# The line the OpenCode executor logs once it has created the task's OpenCode session.
OPENCODE_SESSION_LINE = re.compile(r": OpenCode session ses_")
STEPS = (
    ("created -> task leased (plan, worktree, lease)", "leased"),
    ("leased -> OpenCode session created", "opencode_session"),
    ("OpenCode session -> task COMPLETED (turn, result)", "task_completed"),
    ("task COMPLETED -> session COMPLETED", "session_completed"),
    ("outside the server (request, poll delay)", "outside"),
)

Json = dict[str, Any]


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    count: int
    median_ms: float | None
    p90_ms: float | None
    """Nearest rank."""
    min_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, values_ms: list[float]) -> Figures:
        ordered = sorted(values_ms)
        if not ordered:
            return cls(0, None, None, None, None)
        return cls(
            len(ordered),
            round(statistics.median(ordered), 1),
            percentile(ordered, 0.90),
            round(ordered[0], 1),
            round(ordered[-1], 1),
        )


@dataclass
class ModeResult:
    mode: str
    runs_ms: list[float] = field(default_factory=list)
    """The measured runs, in order (warm-ups left out)."""
    warmup_ms: list[float] = field(default_factory=list)
    model_requests: list[int] = field(default_factory=list)
    """Chat completions the scripted model answered during each measured run."""
    failures: list[str] = field(default_factory=list)
    figures: Figures = field(default_factory=lambda: Figures.of([]))


@dataclass
class Report:
    cpu_model: str
    cores: int
    backend: str
    tasks: int
    warmup: int
    opencode_version: str = ""
    bare: ModeResult = field(default_factory=lambda: ModeResult("bare"))
    same_directory: ModeResult = field(default_factory=lambda: ModeResult("bare, same dir"))
    orchestrated: ModeResult = field(default_factory=lambda: ModeResult("orchestrated"))
    steps_ms: dict[str, list[float]] = field(default_factory=dict)
    """Per orchestrated run (measured), each step's duration (``STEPS``)."""
    steps: dict[str, Figures] = field(default_factory=dict)
    added_ms: float | None = None
    """Median orchestrated - median bare."""
    ratio: float | None = None
    """Median orchestrated / median bare."""
    directory_setup_ms: float | None = None
    """Median bare - median bare in the same directory."""
    load_before: float = 0.0
    load_after: float = 0.0
    seconds_total: float = 0.0

    @property
    def modes(self) -> tuple[ModeResult, ...]:
        return (self.bare, self.same_directory, self.orchestrated)

    @property
    def failures(self) -> int:
        return sum(len(mode.failures) for mode in self.modes)


# -- the scripted model ---------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """The scripted model's process: where it listens, and what it has answered."""

    base_url: str
    """The ``…/v1`` URL to configure."""
    http: httpx.AsyncClient

    async def chat_requests(self) -> int:
        """Chat requests answered with a completion so far (not failures, not titles)."""
        response = await self.http.get(self.base_url.removesuffix("/v1") + "/_scripted/calls")
        if response.status_code != 200:
            raise BenchError(f"the scripted model's calls: HTTP {response.status_code}")
        return sum(c["kind"] == "chat" and c["usage"] is not None for c in response.json())


@contextlib.asynccontextmanager
async def running_model() -> AsyncIterator[Model]:
    """The scripted model on a free loopback port, stopped on the way out."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "industrial_orchestrator.testing.scripted_model",
        "--port",
        "0",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), MODEL_START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith(MODEL_LISTENING):
            raise BenchError(f"the scripted model did not start: {text or 'no output'}")
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
            yield Model(text.removeprefix(MODEL_LISTENING).strip(), http)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


# -- OpenCode --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenCode:
    base_url: str
    password: str

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1].rstrip("/"))


def opencode_binary(configured: str | None) -> Path:
    path = Path(configured) if configured else DEFAULT_OPENCODE
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BenchError(
            f"no opencode binary at {path}: `make {DEFAULT_OPENCODE.relative_to(REPO_ROOT)}` "
            "installs it (or pass --opencode-bin / set OPENCODE_BIN)"
        )
    return path


def opencode_env(root: Path, password: str, config: Json) -> dict[str, str]:
    """This environment without OpenCode settings, with a home and config under ``root``:
    no user config, auth or cache gets in, nothing gets out."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OPENCODE_")}
    for name, sub in (
        ("HOME", "home"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / sub)
    env["OPENCODE_SERVER_PASSWORD"] = password
    env["OPENCODE_CONFIG_CONTENT"] = json.dumps(config)
    env["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
    return env


@contextlib.asynccontextmanager
async def running_opencode(binary: Path, root: Path, config: Json) -> AsyncIterator[OpenCode]:
    """``opencode serve --port 0`` under ``root``, up once it prints its listening line.

    It runs in a process group of its own, which gets SIGTERM and then, after a short
    grace, SIGKILL: OpenCode 1.18 does not always honour SIGTERM once it has worked in a
    few directories."""
    password = secrets.token_urlsafe(16)
    env = opencode_env(root, password, config)
    stdout_path, stderr_path = root / "stdout.log", root / "stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(binary),
            "serve",
            "--port",
            "0",
            "--hostname",
            LOOPBACK,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        base_url = await _listening(process, stdout_path, stderr_path)
        yield OpenCode(base_url, password)
    finally:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), OPENCODE_STOP_GRACE_S)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


async def _listening(process: asyncio.subprocess.Process, stdout: Path, stderr: Path) -> str:
    deadline = time.monotonic() + OPENCODE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in _lines(stdout):
            if line.startswith(OPENCODE_LISTENING):
                return line.removeprefix(OPENCODE_LISTENING).strip()
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    state = "exited" if process.returncode is not None else "is not listening"
    raise BenchError(
        f"opencode serve {state} after {OPENCODE_START_TIMEOUT_S:.0f} s; stderr ends with:\n"
        + "\n".join(_lines(stderr)[-20:])
    )


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


# -- the repository --------------------------------------------------------------------------


def make_repository(directory: Path) -> Path:
    """A git repository with one committed file."""
    directory.mkdir(parents=True)
    (directory / "README.md").write_text("# bench\n\nA repository for the overhead bench.\n")
    identity = ["-c", "user.name=Bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q"], ["add", "."], [*identity, "commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True)
    return directory


def wrote_file(directory: Path) -> str | None:
    """Why the prompt's file is not as expected in ``directory``, or None when it is."""
    path = directory / FILE_NAME
    try:
        content = path.read_text()
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None if content == FILE_CONTENT else f"{path} holds {content[:80]!r}"


# -- 1. bare ---------------------------------------------------------------------------------


async def bare_turn(client: OpenCodeClient, directory: Path) -> float:
    """One OpenCode round trip in ``directory``: ms from the create call to the idle event
    of the session it created."""
    connected, idle = asyncio.Event(), asyncio.Event()
    errors: list[str] = []

    async def read(session_id: str) -> None:
        # Cancelled inside the stream's iteration, which closes the connection.
        async for event in client.events(str(directory)):
            connected.set()
            props = event.get("properties") or {}
            if props.get("sessionID") != session_id:
                continue
            if event["type"] == "session.error":
                errors.append(json.dumps(props.get("error"))[:300])
            elif event["type"] == "session.idle":
                idle.set()
                return

    started = time.perf_counter()
    session_id = await client.create_session(str(directory), "overhead bench")
    reader = asyncio.create_task(read(session_id), name="bench-events")
    try:
        try:
            async with asyncio.timeout(STREAM_OPEN_TIMEOUT_S):
                await _until(connected, reader, "the event stream did not open")
        except TimeoutError as exc:
            raise TurnFailed(f"no event within {STREAM_OPEN_TIMEOUT_S:g} s") from exc
        await client.prompt(session_id, str(directory), PROMPT, model=ModelRef.parse(MODEL))
        await _until(idle, reader, "the event stream ended before the session was idle")
        elapsed = (time.perf_counter() - started) * 1000.0
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, OpenCodeError):
            await reader
    if errors:
        raise TurnFailed(f"session.error: {errors[0]}")
    return elapsed


async def _until(flag: asyncio.Event, reader: asyncio.Task[None], gone: str) -> None:
    """Until ``flag`` is set; the reader ending first (its error, or ``gone``) fails the run."""
    waiting = asyncio.create_task(flag.wait())
    try:
        await asyncio.wait({waiting, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if flag.is_set():
        return
    error = reader.exception()
    raise TurnFailed(f"{gone}: {error}" if error else gone)


class TurnFailed(Exception):
    """A run that ended, but not as it should have (counted, not fatal)."""


# -- 2. orchestrated -------------------------------------------------------------------------


def app_settings(
    home: Path, workspaces: Path, opencode: OpenCode, database_url: str | None, redis_port: int
) -> Settings:
    overrides: dict[str, Any] = {}
    if database_url is not None:
        overrides.update(database_url=database_url, **redis_settings(redis_port))
    try:
        return load_settings(
            _env_file=None,
            orchestrator_home=home,
            log_level="WARNING",
            engine_enabled=True,
            internal_agents=True,
            engine_tick_seconds=ENGINE_TICK_SECONDS,
            opencode_host=LOOPBACK,
            opencode_port=opencode.port,
            opencode_password=SecretStr(opencode.password),
            opencode_model=MODEL,
            opencode_poll_seconds=OPENCODE_POLL_SECONDS,
            workspace_roots=str(workspaces),
            **overrides,
        )
    except ConfigurationError as exc:
        raise BenchError(str(exc)) from exc


async def orchestrated_task(
    http: httpx.AsyncClient, repository: Path, index: int
) -> tuple[float, Json]:
    """One session through the engine: (ms from POST to seen terminal, the session)."""
    body = {
        "title": f"overhead bench {index}",
        "initial_prompt": PROMPT,
        "template": "single",
        "workspace": str(repository),
        "auto_start": True,
    }
    started = time.perf_counter()
    response = await http.post(SESSIONS_PATH, json=body)
    if response.status_code != 201:
        raise BenchError(f"creating a session: HTTP {response.status_code} {response.text[:300]}")
    path = f"{SESSIONS_PATH}/{response.json()['id']}"
    while True:
        response = await http.get(path)
        if response.status_code != 200:
            raise BenchError(f"GET {path}: HTTP {response.status_code} {response.text[:300]}")
        session: Json = response.json()
        if session["terminal"]:
            return (time.perf_counter() - started) * 1000.0, session
        await asyncio.sleep(POLL_SECONDS)


async def orchestrated_steps(
    http: httpx.AsyncClient, session: Json, elapsed_ms: float
) -> dict[str, float]:
    """The run's steps (``STEPS``), in ms, from the session's events; the steps whose
    event is missing are left out."""
    path = f"{SESSIONS_PATH}/{session['id']}/events"
    response = await http.get(path, params={"limit": 1000})
    if response.status_code != 200:
        raise BenchError(f"GET {path}: HTTP {response.status_code} {response.text[:300]}")
    marks: dict[str, datetime] = {"created": datetime.fromisoformat(session["created_at"])}
    for event in response.json()["items"]:
        payload, at = event["payload"], datetime.fromisoformat(event["at"])
        if event["type"] == "task.leased":
            marks.setdefault("leased", at)
        elif event["type"] == "session.log" and OPENCODE_SESSION_LINE.search(payload["text"]):
            marks.setdefault("opencode_session", at)
        elif event["type"] == "task.transition" and payload["to"] == "COMPLETED":
            marks.setdefault("task_completed", at)
    if session["finished_at"]:
        marks["session_completed"] = datetime.fromisoformat(session["finished_at"])
    steps: dict[str, float] = {}
    previous = "created"
    for _, name in STEPS[:-1]:
        if name in marks and previous in marks:
            steps[name] = (marks[name] - marks[previous]).total_seconds() * 1000.0
        previous = name
    if "session_completed" in marks:
        lifecycle = marks["session_completed"] - marks["created"]
        steps["outside"] = elapsed_ms - lifecycle.total_seconds() * 1000.0
    return steps


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Rounds:
    """The runs, one round (bare, bare in the same directory, orchestrated) at a time."""

    args: argparse.Namespace
    report: Report
    model: Model
    client: OpenCodeClient
    http: httpx.AsyncClient
    workspaces: Path
    repository: Path
    same: Path
    """The bare runs' one directory, for ``report.same_directory``."""

    async def round(self, index: int) -> None:
        counted = index >= self.args.warmup
        fresh = self.workspaces / f"bare-{index:03d}"
        shutil.copytree(self.repository, fresh, symlinks=True)
        (self.same / FILE_NAME).unlink(missing_ok=True)
        report = self.report
        times = [
            await self.timed(report.bare, self.bare(fresh), counted),
            await self.timed(report.same_directory, self.bare(self.same), counted),
            await self.timed(report.orchestrated, self.orchestrated(index, counted), counted),
        ]
        name = f"round {index - self.args.warmup + 1}" if counted else f"warm-up {index + 1}"
        progress.print(
            f"{name}: "
            + ", ".join(
                f"{mode.mode} {'failed' if ms is None else f'{ms:.0f} ms'}"
                for mode, ms in zip(report.modes, times, strict=True)
            )
        )

    async def timed(self, result: ModeResult, run: Awaitable[float], counted: bool) -> float | None:
        """``run`` into ``result``: its ms, or None when it failed (or took too long)."""
        limit = self.args.timeout
        before = await self.model.chat_requests()
        try:
            try:
                async with asyncio.timeout(limit):
                    elapsed = await run
            except TimeoutError as exc:
                raise TurnFailed(f"not done within {limit:g} s") from exc
        except TurnFailed as exc:
            result.failures.append(str(exc))
            progress.print(f"  [red]{result.mode}: {exc}[/]", markup=True)
            return None
        requests = await self.model.chat_requests() - before
        if counted:
            result.runs_ms.append(round(elapsed, 1))
            result.model_requests.append(requests)
        else:
            result.warmup_ms.append(round(elapsed, 1))
        return elapsed

    async def bare(self, directory: Path) -> float:
        elapsed = await bare_turn(self.client, directory)
        problem = wrote_file(directory)
        if problem:
            raise TurnFailed(problem)
        return elapsed

    async def orchestrated(self, index: int, counted: bool) -> float:
        elapsed, session = await orchestrated_task(self.http, self.repository, index)
        if session["status"] != "COMPLETED":
            raise TurnFailed(f"session {session['status']}: {session['status_reason']}")
        problem = wrote_file(Path(session["worktree"] or self.repository))
        if problem:
            raise TurnFailed(problem)
        if counted:
            for name, value in (await orchestrated_steps(self.http, session, elapsed)).items():
                self.report.steps_ms.setdefault(name, []).append(round(value, 1))
        return elapsed


async def run_async(
    args: argparse.Namespace, report: Report, workdir: Path, database_url: str | None
) -> None:
    binary = opencode_binary(args.opencode_bin or os.environ.get("OPENCODE_BIN"))
    workspaces = workdir / "workspaces"
    repository = make_repository(workspaces / "repo")
    same = workspaces / "bare-same"
    shutil.copytree(repository, same, symlinks=True)
    async with AsyncExitStack() as stack:
        model = await stack.enter_async_context(running_model())
        config = opencode_config(model.base_url)
        oc = await stack.enter_async_context(running_opencode(binary, workdir / "opencode", config))
        client = await stack.enter_async_context(OpenCodeClient(oc.base_url, oc.password))
        try:
            report.opencode_version = str((await client.health()).get("version", ""))
        except OpenCodeError as exc:
            raise BenchError(f"OpenCode does not answer: {exc}") from exc
        settings = app_settings(workdir / "home", workspaces, oc, database_url, args.redis_port)
        app = create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=60.0
            )
        )
        progress.print(
            f"OpenCode {report.opencode_version} at {oc.base_url}, model {MODEL} at "
            f"{model.base_url}, app on {LABELS[args.backend]}; {args.warmup} warm-up + "
            f"{args.tasks} measured rounds of (bare, bare same directory, orchestrated)"
        )
        rounds = Rounds(args, report, model, client, http, workspaces, repository, same)
        for index in range(args.warmup + args.tasks):
            await rounds.round(index)


def quiet_logs() -> None:
    """The app's logs at WARNING, on stderr: unconfigured, structlog would print every
    debug line to stdout, costing the orchestrated runs time and burying the table."""
    configure_logging("WARNING")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


def run(args: argparse.Namespace) -> Report:
    quiet_logs()
    report = Report(
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 0,
        backend=LABELS[args.backend],
        tasks=args.tasks,
        warmup=args.warmup,
        load_before=round(os.getloadavg()[0], 2),
    )
    started = time.monotonic()
    with ExitStack() as stack:
        # Created and dropped outside the event loop (the helper runs a loop of its own).
        database_url = None
        if args.backend == "postgresql":
            check_redis(args.redis_port)
            pg = Postgres.from_args(args)
            database_url = pg.url(stack.enter_context(temporary_database(pg, "opencode")))
        workdir = stack.enter_context(temporary_workdir())
        asyncio.run(run_async(args, report, workdir, database_url))
    report.seconds_total = round(time.monotonic() - started, 1)
    report.load_after = round(os.getloadavg()[0], 2)
    for mode in report.modes:
        mode.figures = Figures.of(mode.runs_ms)
    report.steps = {name: Figures.of(values) for name, values in report.steps_ms.items()}
    bare = report.bare.figures.median_ms
    orchestrated = report.orchestrated.figures.median_ms
    same = report.same_directory.figures.median_ms
    if bare and orchestrated is not None:
        report.added_ms = round(orchestrated - bare, 1)
        report.ratio = round(orchestrated / bare, 2)
    if bare is not None and same is not None:
        report.directory_setup_ms = round(bare - same, 1)
    return report


# -- output ----------------------------------------------------------------------------------


def summary(report: Report) -> str:
    if report.added_ms is None or report.ratio is None:
        return "no figures: a mode had no successful run"
    return (
        f"orchestrator adds {report.added_ms:.0f} ms per task (median), "
        f"ratio {report.ratio:.2f} x the bare OpenCode round trip"
    )


def print_tables(report: Report) -> None:
    out = Console()
    table = Table(
        title=(
            f"One @write task: bare OpenCode vs the orchestrator ({report.backend}), "
            f"{report.tasks} runs each after {report.warmup} warm-up"
        ),
        caption=(
            "bare: OpenCode session create -> idle, in a fresh copy of the repository (same "
            "dir: always the one); orchestrated: POST /sessions -> seen COMPLETED, polled "
            f"every {POLL_SECONDS * 1000:.0f} ms; dir set-up: bare - bare, same dir, OpenCode's "
            f"own cost of a first turn in a directory. OpenCode {report.opencode_version}, "
            f"scripted model, ENGINE_TICK_SECONDS={ENGINE_TICK_SECONDS:g}, "
            f"OPENCODE_POLL_SECONDS={OPENCODE_POLL_SECONDS:g}. {report.cpu_model}, "
            f"{report.cores} cores, load average {report.load_before:g} before, "
            f"{report.load_after:g} after; the run took {report.seconds_total:g} s"
        ),
    )
    add_columns(table, "mode", "runs", "median ms", "p90 ms", "min ms", "max ms", "model req")
    for result in report.modes:
        figures = result.figures
        failed = f" [red]+{len(result.failures)} failed[/]" if result.failures else ""
        table.add_row(
            result.mode,
            f"{figures.count}{failed}",
            fmt_ms(figures.median_ms),
            fmt_ms(figures.p90_ms),
            fmt_ms(figures.min_ms),
            fmt_ms(figures.max_ms),
            "/".join(str(n) for n in sorted(set(result.model_requests))) or "-",
        )
    table.add_section()
    ratio = "-" if report.ratio is None else f"{report.ratio:.2f} x"
    for label, value in (
        ("added (orch - bare)", fmt_ms(report.added_ms)),
        ("ratio (orch / bare)", ratio),
        ("dir set-up", fmt_ms(report.directory_setup_ms)),
    ):
        table.add_row(label, "", value, "", "", "", "")
    out.print(table)

    steps = Table(
        title="Where an orchestrated run's time goes",
        caption=(
            "from the session's events (server clock, when each event's transaction began); "
            "the last row is the measured time minus created_at -> finished_at"
        ),
    )
    add_columns(steps, "step", "median ms", "p90 ms")
    for label, name in STEPS:
        figures = report.steps.get(name, Figures.of([]))
        steps.add_row(label, fmt_ms(figures.median_ms), fmt_ms(figures.p90_ms))
    out.print(steps)

    for result in report.modes:
        for failure in result.failures:
            out.print(f"  [red]{result.mode} failed[/] {failure}", markup=True, highlight=False)
    out.print(summary(report), highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=10, help="measured runs per mode (10)")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted runs per mode first (2)")
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite", help="storage (sqlite)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds allowed per run (120)"
    )
    parser.add_argument(
        "--opencode-bin", help=f"the opencode binary (OPENCODE_BIN, else {DEFAULT_OPENCODE})"
    )
    add_postgres_args(parser)
    add_redis_arg(parser)
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.warmup < 0 or args.timeout <= 0:
        parser.error("--tasks must be at least 1, --warmup at least 0, --timeout positive")
    return args


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        run,
        parse_args(argv),
        print_tables,
        failures="failures",
        cleaned_up="OpenCode stopped, database dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
