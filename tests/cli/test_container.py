"""``orchestrator container secrets|serve``: the image's first start, run here as
docker-compose runs it (no Docker daemon needed), in temporary directories standing for
the volumes: secrets generated once, private and reused; PostgreSQL's copy of its
password the one the orchestrator uses; a value from .env winning; the first operator
token printed once and only once, and the server it starts accepting it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from industrial_orchestrator.cli.container import KEPT, drop_empty_settings

from ..backends import postgres_url_for, temporary_postgres_database
from ..server_process import ServerProcess, orchestrator_env, run_cli

API = "/api/v1"
ME = f"{os.getuid()}:{os.getgid()}"  # as root the step gives files away; here, to us


@pytest.fixture
def volumes(tmp_path: Path) -> dict[str, Path]:
    return {"home": tmp_path / "orchestrator-data", "postgres": tmp_path / "postgres-secret"}


def run_secrets_step(volumes: dict[str, Path], cwd: Path, **env: str) -> str:
    cwd.mkdir(exist_ok=True)
    done = run_cli(
        "container",
        "secrets",
        "--postgres-password-file",
        str(volumes["postgres"] / "db_password"),
        "--postgres-user",
        ME,
        "--orchestrator-user",
        ME,
        env=orchestrator_env(ORCHESTRATOR_HOME=str(volumes["home"]), **env),
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def kept(volumes: dict[str, Path]) -> dict[str, str]:
    directory = volumes["home"] / "secrets"
    return {path.name: path.read_text().strip() for path in sorted(directory.iterdir())}


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secrets_are_generated_once_private_and_shared_with_postgres(
    volumes: dict[str, Path], tmp_path: Path
):
    # docker-compose passes what .env does not set as an empty string.
    said = run_secrets_step(
        volumes, tmp_path / "cwd", SECRET_KEY="", AGENT_REGISTRATION_TOKEN="", DB_PASSWORD=""
    )
    first = kept(volumes)
    assert set(first) == {name.lower() for name in KEPT}
    assert all(len(value) >= 32 for value in first.values())
    assert len(set(first.values())) == 3
    directory = volumes["home"] / "secrets"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(private(path) for path in directory.iterdir())
    postgres_copy = volumes["postgres"] / "db_password"
    assert postgres_copy.read_text() == first["db_password"]
    assert private(postgres_copy)
    for value in first.values():
        assert value not in said

    run_secrets_step(volumes, tmp_path / "cwd")
    assert kept(volumes) == first, "a second start makes nothing new"
    assert postgres_copy.read_text() == first["db_password"]


def test_a_value_set_in_dot_env_wins_over_a_generated_one(volumes: dict[str, Path], tmp_path: Path):
    said = run_secrets_step(
        volumes, tmp_path / "cwd", DB_PASSWORD="from-dot-env", SECRET_KEY="s" * 40
    )
    assert (volumes["postgres"] / "db_password").read_text() == "from-dot-env"
    # Nothing is generated for what is given.
    assert set(kept(volumes)) == {"agent_registration_token"}
    assert "DB_PASSWORD" in said
    assert "SECRET_KEY" in said


def test_empty_settings_are_unset_other_variables_are_left_alone():
    environ = {"LOG_LEVEL": "", "MAX_CONCURRENT_SESSIONS": " ", "DEBUG": "true", "HOME": ""}
    drop_empty_settings(environ)
    assert environ == {"DEBUG": "true", "HOME": ""}


@pytest.fixture
def postgres_env() -> Iterator[dict[str, str]]:
    """DB_* of a database of the test's own (the local server trusts any password, so the
    kept one does not have to be PostgreSQL's)."""
    with temporary_postgres_database("io_container") as name:
        url = make_url(postgres_url_for(name))
        yield {
            "DB_HOST": url.host or "127.0.0.1",
            "DB_PORT": str(url.port or 5432),
            "DB_NAME": name,
            "DB_USER": url.username or "postgres",
        }


@pytest.mark.slow
def test_the_first_start_prints_an_operator_token_once_and_serves_with_the_kept_secrets(
    volumes: dict[str, Path], tmp_path: Path, postgres_env: dict[str, str]
):
    run_secrets_step(volumes, tmp_path / "cwd")
    secrets = kept(volumes)
    env = {
        **postgres_env,
        "ORCHESTRATOR_HOME": str(volumes["home"]),
        "LOG_LEVEL": "WARNING",
        # As docker-compose passes what .env leaves unset.
        "SECRET_KEY": "",
        "AGENT_REGISTRATION_TOKEN": "",
        "DB_PASSWORD": "",
        "MAX_CONCURRENT_SESSIONS": "",
    }
    with ServerProcess(
        env, tmp_path / "server", host="0.0.0.0", command=("container", "serve")
    ) as server:
        first = server.start()
        [line] = [line for line in first.stdout.splitlines() if line.strip().startswith("orch_")]
        token = line.strip()
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            # A non-loopback bind asks for operator tokens: the printed one opens the API.
            assert http.get(f"{API}/sessions").status_code == 401
            signed_in = {"Authorization": f"Bearer {token}"}
            assert http.get(f"{API}/sessions", headers=signed_in).status_code == 200
            # Agents register with the kept AGENT_REGISTRATION_TOKEN, and nothing else.
            body = {
                "protocol_version": "1.0",
                "name": "container-agent",
                "version": "1",
                "agent_type": "implementer",
                "capabilities": ["python"],
            }
            assert http.post(f"{API}/agents/external/register", json=body).status_code == 401
            registered = http.post(
                f"{API}/agents/external/register",
                json=body,
                headers={"Authorization": f"Bearer {secrets['agent_registration_token']}"},
            )
            assert registered.status_code == 201, registered.text
            agent = registered.json()
        server.restart(graceful=True)
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            # Signed with the kept SECRET_KEY: the agent's token outlives the restart.
            beat = http.post(
                f"{API}/agents/external/{agent['agent_id']}/heartbeat",
                json={"status": "healthy"},
                headers={
                    "Authorization": f"Bearer {agent['auth_token']}",
                    "X-Agent-ID": agent["agent_id"],
                },
            )
            assert beat.status_code == 200, beat.text
            assert http.get(f"{API}/sessions", headers=signed_in).status_code == 200
        second = server.current
        assert "orch_" not in second.stdout + second.stderr, "the token is shown only once"
        for run in server.runs:
            for value in secrets.values():
                assert value not in run.stdout + run.stderr
