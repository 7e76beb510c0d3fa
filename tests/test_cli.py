"""The ``orchestrator`` command, run for real as a subprocess: version, migrate, and how
``serve`` starts (banner, JSON logs, redacted password) or refuses to start (bad settings,
unreachable database) with a clear message and no traceback."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from industrial_orchestrator import __version__
from industrial_orchestrator.storage.migrate import head_revision

from .backends import postgres_url_for, temporary_postgres_database
from .server_process import ServerProcess, free_port, orchestrator_env, run_cli

pytestmark = pytest.mark.slow

PASSWORD = "s3cr3t-pw"
REFUSAL_TIMEOUT = 20.0  # a refused start takes about a second; far less than this
TABLES = {"alembic_version", "sessions", "session_transitions", "checkpoints", "events"}


def _flat(text: str) -> str:
    """Whitespace collapsed: the console wraps long lines at 80 columns when not a tty."""
    return " ".join(text.split())


def _assert_password_hidden(*outputs: str) -> None:
    for output in outputs:
        # Also with line breaks removed, in case a wrap split the password in two.
        assert PASSWORD not in output
        assert PASSWORD not in "".join(output.split())


def _url_with_password(database: str, port: int | None = None) -> str:
    url = make_url(postgres_url_for(database)).set(username="postgres", password=PASSWORD)
    if port is not None:
        url = url.set(port=port)
    return url.render_as_string(hide_password=False)


def _serve_args() -> list[str]:
    return ["serve", "--host", "127.0.0.1", "--port", str(free_port())]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The subprocesses' cwd: an empty directory, so no stray ``.env`` is read."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh ORCHESTRATOR_HOME that does not exist yet."""
    return tmp_path / "home"


def test_version_prints_the_installed_version(workdir: Path):
    result = run_cli("version", env=orchestrator_env(), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__ == installed_version("industrial-orchestrator")


def _schema(path: Path) -> tuple[set[str], list[str]]:
    with closing(sqlite3.connect(path)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        revisions = [
            row[0] for row in connection.execute("SELECT version_num FROM alembic_version")
        ]
    return tables, revisions


def test_migrate_creates_the_sqlite_database_and_is_idempotent(workdir: Path, home: Path):
    env = orchestrator_env(ORCHESTRATOR_HOME=str(home))
    database = home / "orchestrator.db"
    assert not home.exists()

    first = run_cli("migrate", env=env, cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert database.is_file()
    assert "newest schema" in _flat(first.stderr)
    tables, revisions = _schema(database)
    assert tables >= TABLES
    assert revisions == [head_revision()]

    second = run_cli("migrate", env=env, cwd=workdir)
    assert second.returncode == 0, second.stderr
    assert _schema(database) == (tables, revisions)
    for result in (first, second):
        assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "also_named"),
    [
        pytest.param("MAX_CONCURRENT_SESSIONS", "abc", (), id="not-an-integer"),
        pytest.param(
            "LOG_LEVEL", "LOUD", ("DEBUG", "INFO", "WARNING", "ERROR"), id="unknown-log-level"
        ),
        pytest.param("DB_PORT", "99999", ("65535",), id="port-out-of-range"),
        pytest.param(
            "DEFAULT_SESSION_PRIORITY",
            "URGENT",
            ("LOW", "MEDIUM", "HIGH", "CRITICAL"),
            id="unknown-priority",
        ),
    ],
)
def test_serve_refuses_a_bad_variable_with_a_clear_message(
    workdir: Path, home: Path, variable: str, value: str, also_named: tuple[str, ...]
):
    env = orchestrator_env(ORCHESTRATOR_HOME=str(home), **{variable: value})
    # run_cli fails the test if the process is still running (serving) after the timeout.
    result = run_cli(*_serve_args(), env=env, cwd=workdir, timeout=REFUSAL_TIMEOUT)

    message = _flat(result.stderr)
    assert result.returncode != 0
    assert variable in message
    for accepted in also_named:
        assert accepted in message
    assert "Traceback" not in result.stdout + result.stderr
    assert "serving on" not in message
    assert not home.exists(), "a refused start must not touch the database"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    with temporary_postgres_database("io_cli") as name:
        yield name


def test_serve_banner_shows_url_and_redacted_database_and_logs_json(
    postgres_database: str, tmp_path: Path
):
    env = {"DATABASE_URL": _url_with_password(postgres_database), "LOG_LEVEL": "INFO"}
    with ServerProcess(env, tmp_path / "server") as server:
        server.start()
        with server.client() as http:
            assert http.get("/ready").status_code == 200
            created = http.post(
                "/api/v1/sessions", json={"title": "logged", "initial_prompt": "Log me"}
            )
            assert created.status_code == 201, created.text
            assert http.get(f"/api/v1/sessions/{uuid.uuid4()}").status_code == 404
        server.terminate()  # graceful, so the shutdown is logged too
        stdout, stderr = server.current.stdout, server.current.stderr

    _assert_password_hidden(stdout, stderr)
    assert "Traceback" not in stdout + stderr

    banners = [line for line in stderr.splitlines() if "serving on" in line]
    assert len(banners) == 1, stderr
    banner = banners[0]
    assert f"http://127.0.0.1:{server.port}" in banner
    assert "***" in banner
    assert postgres_database in banner

    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "INFO logging produced no log line on stdout"
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"timestamp", "level", "event"} <= record.keys(), line


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_unreachable_database_is_reported_without_traceback(workdir: Path, command: str):
    nothing_listening = free_port()
    env = orchestrator_env(DATABASE_URL=_url_with_password("orchestration", port=nothing_listening))
    args = _serve_args() if command == "serve" else [command]
    result = run_cli(*args, env=env, cwd=workdir, timeout=REFUSAL_TIMEOUT)

    message = _flat(result.stderr)
    assert result.returncode != 0
    assert "cannot reach the database" in message
    assert "***" in message
    _assert_password_hidden(result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert "serving on" not in message


@pytest.mark.parametrize(
    "database_url",
    [
        pytest.param(
            _url_with_password(f"io_missing_{uuid.uuid4().hex[:8]}"), id="database-missing"
        ),
        pytest.param(
            f"postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/orchestration",
            id="port-not-a-number",
        ),
        pytest.param("garbage", id="not-a-url"),
        pytest.param(f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/", id="no-database-name"),
    ],
)
def test_unusable_database_url_is_reported_without_traceback(workdir: Path, database_url: str):
    env = orchestrator_env(DATABASE_URL=database_url)
    result = run_cli(*_serve_args(), env=env, cwd=workdir, timeout=REFUSAL_TIMEOUT)

    assert result.returncode != 0
    _assert_password_hidden(result.stdout, result.stderr)
    assert "serving on" not in _flat(result.stderr)
    assert "Traceback" not in result.stdout + result.stderr


def test_a_second_server_on_one_sqlite_file_is_refused(workdir: Path, home: Path):
    env = {"ORCHESTRATOR_HOME": str(home), "LOG_LEVEL": "WARNING"}
    with ServerProcess(env, workdir / "first") as first:
        first.start()
        second = run_cli(
            *_serve_args(), env=orchestrator_env(**env), cwd=workdir, timeout=REFUSAL_TIMEOUT
        )
        assert second.returncode == 1
        message = _flat(second.stderr)
        assert "already serving" in message
        assert "DATABASE_URL" in message
        assert "Traceback" not in second.stdout + second.stderr
        migrated = run_cli("migrate", env=orchestrator_env(**env), cwd=workdir)
        assert migrated.returncode == 0, migrated.stderr
        with first.client() as http:
            assert http.get("/health").status_code == 200
        first.kill()
    with ServerProcess(env, workdir / "after-kill") as again:
        again.start()  # the lock died with the killed process


def test_serve_on_a_public_address_requires_an_agent_registration_token(workdir: Path, home: Path):
    env = orchestrator_env(ORCHESTRATOR_HOME=str(home))
    args = ["serve", "--host", "0.0.0.0", "--port", str(free_port())]
    result = run_cli(*args, env=env, cwd=workdir, timeout=REFUSAL_TIMEOUT)
    message = _flat(result.stderr)
    assert result.returncode == 2
    assert "AGENT_REGISTRATION_TOKEN" in message
    assert "Traceback" not in result.stdout + result.stderr
    assert not home.exists(), "a refused start must not touch the database"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool):
    from industrial_orchestrator.cli.server_commands import is_loopback

    assert is_loopback(host) is loopback


def test_serve_says_in_its_start_line_and_in_ready_that_no_model_is_configured(tmp_path: Path):
    env = {
        "ENGINE_ENABLED": "true",
        "INTERNAL_AGENTS": "true",
        "OPENCODE_BIN": str(tmp_path / "no-opencode-here"),
    }
    with ServerProcess(env, tmp_path / "server") as server:
        server.start()
        with server.client() as http:
            ready = http.get("/ready")
        server.terminate()
        stderr = server.current.stderr

    assert ready.status_code == 200, ready.text
    assert ready.json()["details"]["model"]["configured"] is False
    [banner] = [line for line in stderr.splitlines() if "serving on" in line]
    assert "NO MODEL CONFIGURED" in banner
    assert "OPENCODE_MODEL=provider/model" in banner
