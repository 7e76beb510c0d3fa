"""``orchestrator token`` and a server on a public address: tokens made on the command
line open the API, a viewer reads only, a revoked token closes it again; unsafe public
settings are refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.server_process import ServerProcess, free_port, orchestrator_env, run_cli

pytestmark = pytest.mark.slow

SECRET = "k" * 48
PUBLIC = {
    "AGENT_REGISTRATION_TOKEN": "r" * 40,
    "ALLOWED_HOSTS": "https://orchestrator.example.com",
    "SECRET_KEY": SECRET,
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_tokens_are_shown_once_listed_without_their_secret_and_revoked(
    tmp_path: Path, workdir: Path
) -> None:
    env = orchestrator_env(ORCHESTRATOR_HOME=str(tmp_path / "home"))
    made = run_cli("token", "create", "--name", "ci", "--role", "viewer", env=env, cwd=workdir)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("orch_")
    assert len(secret) > 40
    assert "shown this once" in _flat(made.stderr)

    twice = run_cli("token", "create", "--name", "ci", env=env, cwd=workdir)
    assert twice.returncode == 1
    assert "exists already" in twice.stderr
    bad_role = run_cli("token", "create", "--name", "x", "--role", "admin", env=env, cwd=workdir)
    assert bad_role.returncode == 2
    assert "operator or viewer" in bad_role.stderr

    listed = run_cli("token", "list", "--json", env=env, cwd=workdir)
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["name"] == "ci"
    assert row["role"] == "viewer"
    assert row["revoked_at"] is None
    assert secret not in listed.stdout
    table = run_cli("token", "list", env=env, cwd=workdir)
    assert "ci" in table.stdout
    assert "active" in table.stdout

    revoked = run_cli("token", "revoke", "ci", env=env, cwd=workdir)
    assert revoked.returncode == 0, revoked.stderr
    [row] = [
        json.loads(line)
        for line in run_cli("token", "list", "--json", env=env, cwd=workdir).stdout.splitlines()
    ]
    assert row["revoked_at"] is not None
    again = run_cli("token", "revoke", "ci", env=env, cwd=workdir)
    assert again.returncode == 1
    assert "revoked already" in again.stderr
    unknown = run_cli("token", "revoke", "nobody", env=env, cwd=workdir)
    assert unknown.returncode == 1
    assert "no token named 'nobody'" in unknown.stderr


@pytest.mark.parametrize(
    ("unset", "named"),
    [("SECRET_KEY", "SECRET_KEY is not set")],
)
def test_a_public_bind_with_unsafe_settings_is_refused_with_what_to_set(
    tmp_path: Path, workdir: Path, unset: str, named: str
) -> None:
    settings = {key: value for key, value in PUBLIC.items() if key != unset}
    home = tmp_path / "home"
    # On PostgreSQL (never reached: refused first): on SQLite the kept key will do.
    env = orchestrator_env(ORCHESTRATOR_HOME=str(home), DB_HOST="127.0.0.1", **settings)
    result = run_cli(
        "serve", "--host", "0.0.0.0", "--port", str(free_port()), env=env, cwd=workdir, timeout=20
    )
    assert result.returncode == 2
    message = _flat(result.stderr)
    assert named in message
    assert f"set {unset}" in message or "set it to" in message
    assert "Traceback" not in result.stderr
    assert not home.exists(), "a refused start must not touch the database"


def test_every_origin_without_operator_tokens_is_refused_at_start(
    tmp_path: Path, workdir: Path
) -> None:
    home = tmp_path / "home"
    env = orchestrator_env(ORCHESTRATOR_HOME=str(home), ALLOWED_HOSTS="*")
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=workdir, timeout=20)
    assert result.returncode == 2
    message = _flat(result.stderr)
    assert "ALLOWED_HOSTS is '*'" in message
    assert "AUTH_REQUIRED=true" in message
    assert "Traceback" not in result.stderr
    assert not home.exists(), "a refused start must not touch the database"


def test_a_server_on_a_public_address_asks_every_caller_for_a_token(
    tmp_path: Path, workdir: Path
) -> None:
    home = tmp_path / "home"
    env = {"ORCHESTRATOR_HOME": str(home), "LOG_LEVEL": "WARNING", **PUBLIC}
    with ServerProcess(env, tmp_path / "server", host="0.0.0.0") as server:
        server.start()
        assert "operator tokens required" in server.current.stderr
        assert "no operator token exists yet" in server.current.stderr
        cli_env = orchestrator_env(**env)
        operator = run_cli("token", "create", "--name", "ops", env=cli_env, cwd=workdir)
        viewer = run_cli(
            "token", "create", "--name", "wall", "--role", "viewer", env=cli_env, cwd=workdir
        )
        base = f"http://127.0.0.1:{server.port}/api/v1"
        with httpx.Client(base_url=base, timeout=10) as http:
            body = {"title": "Public", "initial_prompt": "p"}
            assert http.post("/sessions", json=body).status_code == 401
            ops = {"Authorization": f"Bearer {operator.stdout.strip()}"}
            wall = {"Authorization": f"Bearer {viewer.stdout.strip()}"}
            assert http.post("/sessions", json=body, headers=ops).status_code == 201
            assert http.get("/sessions", headers=wall).json()["total"] == 1
            assert http.post("/sessions", json=body, headers=wall).status_code == 403
            # The session commands send ORCHESTRATOR_TOKEN.
            url = f"http://127.0.0.1:{server.port}"
            listed = run_cli(
                "session",
                "list",
                "--json",
                "--url",
                url,
                env={**cli_env, "ORCHESTRATOR_TOKEN": operator.stdout.strip()},
                cwd=workdir,
            )
            assert listed.returncode == 0, listed.stderr
            assert json.loads(listed.stdout)["total"] == 1
            bare = run_cli("session", "list", "--url", url, env=cli_env, cwd=workdir)
            assert bare.returncode == 1
            assert "ORCHESTRATOR_TOKEN" in _flat(bare.stderr)
            run_cli("token", "revoke", "ops", env=cli_env, cwd=workdir)
            assert http.get("/sessions", headers=ops).status_code == 401  # at once
            page = http.get(f"http://127.0.0.1:{server.port}/", follow_redirects=False)
            assert page.status_code == 303
            assert page.headers["location"] == "/login?next=%2F"
