"""A Redis server or a PostgreSQL cluster of one test's own, on a free port, for the
tests that kill, stop or empty the service: the machine's shared ones are never touched,
so these tests run beside every other (no test run has to pause for them).

Both are started from the machine's own binaries (Debian's ``redis-server`` and
PostgreSQL's ``initdb``/``pg_ctl``), the same programs the shared services run."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .backends import IN_CI
from .server_process import free_port


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(what)
    pytest.skip(what)


class PrivateRedis:
    """A redis-server that can be SIGKILLed or shut down and started again (empty) on
    the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _missing("redis-server is not installed")
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        output = self.workdir / f"redis-{len(self.processes) + 1}.log"
        with output.open("wb") as out:
            process = subprocess.Popen(
                [
                    *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        deadline = time.monotonic() + 10
        with self.client() as probe:
            while True:
                if process.poll() is not None:
                    pytest.fail(
                        f"redis-server exited with {process.returncode}:\n"
                        f"{output.read_text(errors='replace')}"
                    )
                try:
                    probe.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"redis-server on port {self.port} never answered PING")
                    time.sleep(0.05)

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def subscribers(self, channel: str) -> int:
        with self.client() as probe:
            return int(dict(probe.pubsub_numsub(channel)).get(channel.encode(), 0))


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.kill()


def _postgres_binaries() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


class PrivatePostgres:
    """A PostgreSQL cluster made with ``initdb`` in a directory of its own, listening on
    127.0.0.1 only (trust auth, database ``postgres``). ``stop("immediate")`` is a crash:
    the postmaster and its backends quit without a checkpoint, as after a SIGKILL, and
    ``start`` recovers from the write-ahead log."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.directory = Path(tempfile.mkdtemp(prefix="io-private-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        # PostgreSQL refuses to run as root: root runs it as the postgres user, who
        # must own the directory.
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._bin = _postgres_binaries()

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        assert self._bin is not None
        done = subprocess.run(
            [*self._as, str(self._bin / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            pytest.fail(f"{program} {' '.join(args)} failed:\n{done.stdout}{done.stderr}{log}")

    def create(self) -> None:
        if self._bin is None:
            _missing("PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")
            return
        # --no-sync only skips initdb's own final flush: the crash under test is the
        # postmaster's, not the machine's, and the server itself runs with fsync on.
        self._run("initdb", "--no-sync", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c max_connections=50"
        )
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def ready(self) -> bool:
        assert self._bin is not None
        probe = [str(self._bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False).returncode == 0

    def remove(self) -> None:
        if self._bin is not None and self.data.joinpath("postmaster.pid").exists():
            pg_ctl = str(self._bin / "pg_ctl")
            subprocess.run(
                [*self._as, pg_ctl, "stop", "-D", str(self.data), "-m", "immediate"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.remove()
