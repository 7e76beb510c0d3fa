"""``orchestrator cluster``: several replicas on one machine behind HAProxy.

Every replica is a plain ``orchestrator serve`` on a loopback port of its own, on the one
PostgreSQL (and Redis) of the settings; HAProxy (Debian's package) listens on the public
port, sends each request to a replica that answers ``/ready``, and stops sending to one
that stops answering. Nothing is shared between the replicas but the database: a session
is driven by the replica holding its lease in the database, and when that replica dies
another takes the session over once the lease runs out (SESSION_LEASE_SECONDS).

A replica that exits is started again (after a pause that grows while it keeps failing);
Ctrl-C or SIGTERM stops HAProxy and the replicas, gracefully.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from .server_commands import (
    LOOPBACK_NAMES,
    err,
    is_loopback,
    migrate_or_exit,
    refuse_open_registration,
    refuse_unsafe_public_bind,
    settings_or_exit,
)

STOP_SECONDS = 15.0
RESTART_PAUSE_SECONDS = (1.0, 30.0)
"""The first pause before starting a dead replica again, and the longest."""
STEADY_SECONDS = 60.0
"""A replica that ran this long before exiting starts again after the shortest pause."""


def haproxy_config(host: str, port: int, replicas: list[int]) -> str:
    """HAProxy's configuration: ``host:port`` spread over the replicas' loopback ports,
    each checked on ``/ready`` every second."""
    bind = f"[{host}]" if ":" in host else host
    servers = "\n".join(
        f"    server replica-{n} 127.0.0.1:{replica} check"
        for n, replica in enumerate(replicas, start=1)
    )
    return f"""# Written by `orchestrator cluster`; rewritten at every start.
global
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 90s
    # Above the agents' long-poll (tasks/next waits up to 60 s).
    timeout server 90s
    # WebSocket streams stay open; their pings keep them well inside this.
    timeout tunnel 1h
    timeout http-keep-alive 10s
    # A new server connection per request, closed after its answer: a kept one to a
    # replica that died would fail the request that used it, and HAProxy answers such a
    # failure on a reused connection by closing the client's connection without a
    # response (for the client to retry), which is what clients saw mid-failover.
    option http-server-close
    http-reuse never
    # A replica that refused the connection never saw the request: try another. A read
    # (GET, HEAD) that got no answer at all is tried again too; a change is not, as the
    # dead replica may have committed it (clients repeat those with idempotency keys).
    retry-on conn-failure empty-response
    retries 2
    option redispatch

frontend orchestrator
    bind {bind}:{port}
    acl read method GET HEAD
    http-request disable-l7-retry unless read
    default_backend replicas

backend replicas
    balance roundrobin
    # With a Host the replicas answer to (they refuse requests without one).
    option httpchk
    http-check send meth GET uri /ready ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
    # A dead replica refuses the check's connection at once (and requests meanwhile are
    # tried on the other, above); a live one answering slowly under load must not be
    # taken out with it, or clients get 503 with no replica left: three checks in a row
    # must fail, each given 5 s (without `timeout check` a check gets only `inter`).
    timeout check 5s
    default-server inter 1s fall 3 rise 1
{servers}
"""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    number: int
    port: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pause: float = RESTART_PAUSE_SECONDS[0]
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [
                *_orchestrator(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                # One process per replica: the cluster restarts each on its own.
                "--workers",
                "1",
            ],
            env=env,
        )
        self.started_at = time.monotonic()
        self.restart_at = None


def _orchestrator() -> list[str]:
    """This very installation's command, whatever PATH says."""
    script = Path(sys.executable).with_name("orchestrator")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "industrial_orchestrator.cli"]


def cluster(
    replicas: Annotated[
        int, typer.Option(min=1, max=64, help="How many orchestrator processes to run")
    ] = 3,
    host: Annotated[str, typer.Option(help="Address HAProxy binds")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port HAProxy binds")] = 8000,
    haproxy: Annotated[
        str, typer.Option(help="The HAProxy executable (Debian: apt install haproxy)")
    ] = "haproxy",
) -> None:
    """Run several replicas on one PostgreSQL behind HAProxy on one port."""
    settings = settings_or_exit()
    if settings.database.get_backend_name() != "postgresql":
        err.print(
            "[bold red]error:[/] several replicas need PostgreSQL (SQLite allows one server "
            "process); set DB_HOST or DATABASE_URL.",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(2)
    refuse_open_registration(settings, host)
    refuse_unsafe_public_bind(settings, host)
    executable = shutil.which(haproxy)
    if executable is None:
        err.print(
            f"[bold red]error:[/] {haproxy} not found; install HAProxy (Debian: `apt install "
            "haproxy`) or pass --haproxy /path/to/haproxy.",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(2)
    if settings.redis_host is None:
        err.print(
            "note: REDIS_HOST is not set: the replicas will find each other's events by "
            "polling the database (EVENT_POLL_SECONDS) instead of being woken at once",
            highlight=False,
        )
    migrate_or_exit(settings)  # once, before the replicas race to do it

    env = dict(os.environ)
    if not is_loopback(host):
        # The replicas bind loopback, so they would not ask for tokens by themselves;
        # they answer to the proxy's public name.
        env["AUTH_REQUIRED"] = "true"
        names = [name for name in settings.trusted_hosts.split(",") if name.strip()]
        if host not in (*LOOPBACK_NAMES, *names, "0.0.0.0", "::"):
            env["TRUSTED_HOSTS"] = ",".join([*names, host])
    members = [Replica(n, free_loopback_port()) for n in range(1, replicas + 1)]
    home = Path(settings.orchestrator_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "haproxy.cfg"
    config.write_text(haproxy_config(host, port, [member.port for member in members]))
    checked = subprocess.run([executable, "-c", "-q", "-f", str(config)], capture_output=True)
    if checked.returncode != 0:
        err.print(
            f"[bold red]error:[/] HAProxy refused {config}: "
            f"{checked.stderr.decode(errors='replace').strip()}",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(1)

    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for member in members:
        member.start(env)
    proxy = subprocess.Popen([executable, "-db", "-f", str(config)])
    shown_host = f"[{host}]" if ":" in host else host
    err.print(
        f"cluster of {replicas} replicas (ports "
        f"{', '.join(str(member.port) for member in members)}) serving on "
        f"http://{shown_host}:{port} through HAProxy - database {settings.database_display}",
        highlight=False,
    )
    try:
        while not stopping:
            if proxy.poll() is not None:
                err.print(
                    f"[bold red]error:[/] HAProxy exited with code {proxy.returncode}",
                    markup=True,
                    highlight=False,
                )
                raise typer.Exit(1)
            for member in members:
                _supervise(member, env)
            time.sleep(0.2)
    finally:
        _stop_all(proxy, members)


def _supervise(member: Replica, env: dict[str, str]) -> None:
    """Start a replica again once it has been dead for its pause."""
    now = time.monotonic()
    process = member.process
    if process is not None and process.poll() is None:
        return
    if member.restart_at is None:
        ran = now - member.started_at
        member.pause = (
            RESTART_PAUSE_SECONDS[0]
            if ran >= STEADY_SECONDS
            else min(member.pause * 2, RESTART_PAUSE_SECONDS[1])
        )
        member.restart_at = now + member.pause
        code = process.returncode if process is not None else None
        err.print(
            f"replica-{member.number} (port {member.port}) exited with code {code}; "
            f"starting it again in {member.pause:.0f} s",
            highlight=False,
        )
        return
    if now >= member.restart_at:
        member.restarts += 1
        member.start(env)


def _stop_all(proxy: subprocess.Popen[bytes], members: list[Replica]) -> None:
    processes = [proxy, *(m.process for m in members if m.process is not None)]
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()
            process.wait()
