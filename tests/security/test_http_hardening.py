"""What a stranger on the network, or a web page in the operator's browser, can and cannot
do: unknown Host names (DNS rebinding) get 400, unlisted origins get no CORS grant,
changes are rate-limited per token, and no secret ever reaches the logs or /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from industrial_orchestrator.cli.server_commands import trusted_hosts_for
from industrial_orchestrator.config import load_settings
from industrial_orchestrator.domain.operator_tokens import Role
from tests.api.helpers import API
from tests.server_process import ServerProcess, orchestrator_env, run_cli

SECRET = "z" * 48
REGISTRATION = "registration-secret-" + "q" * 30


def test_the_server_answers_only_to_its_own_host_names(tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_HOME": str(tmp_path / "home"), "LOG_LEVEL": "WARNING"}
    with ServerProcess(env, tmp_path / "server") as server:
        server.start()
        with server.client() as http:
            assert http.get("/health").status_code == 200
            for evil in ["evil.example", "evil.example:8000", "127.0.0.1.nip.io"]:
                refused = http.get("/api/v1/sessions", headers={"Host": evil})
                assert refused.status_code == 400, evil
                assert "host" in refused.text.lower()
            local = http.get("/api/v1/sessions", headers={"Host": f"localhost:{server.port}"})
            assert local.status_code == 200


def test_trusted_host_names_come_from_the_bind_and_the_allowed_origins() -> None:
    settings = load_settings(
        _env_file=None,
        allowed_hosts="https://orchestrator.example.com,http://dash.example:3000",
        trusted_hosts="ops.internal",
    )
    assert trusted_hosts_for(settings, "10.0.0.5") == [
        "localhost",
        "127.0.0.1",
        "::1",
        "10.0.0.5",
        "orchestrator.example.com",
        "dash.example",
        "ops.internal",
    ]
    anything = load_settings(_env_file=None, trusted_hosts="*")
    assert trusted_hosts_for(anything, "0.0.0.0") == ["*"]


@pytest.mark.settings(allowed_hosts="https://dash.example.com")
async def test_only_listed_origins_get_a_cors_grant(client: httpx.AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    listed = await client.options(
        f"{API}/sessions", headers={"Origin": "https://dash.example.com", **preflight}
    )
    assert listed.headers["access-control-allow-origin"] == "https://dash.example.com"
    stranger = await client.options(
        f"{API}/sessions", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in stranger.headers
    simple = await client.get(f"{API}/sessions", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


@pytest.mark.settings(auth_required=True, rate_limit_per_minute=5, secret_key=SECRET)
async def test_changes_are_rate_limited_per_token_and_reads_are_not(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    tokens = app.state.components.operator_tokens
    first = {"Authorization": f"Bearer {(await tokens.create('busy', Role.OPERATOR)).secret}"}
    other = {"Authorization": f"Bearer {(await tokens.create('calm', Role.OPERATOR)).secret}"}
    body = {"title": "t", "initial_prompt": "p"}
    for _ in range(5):
        assert (await client.post(f"{API}/sessions", json=body, headers=first)).status_code == 201
    limited = await client.post(f"{API}/sessions", json=body, headers=first)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"] == "rate_limited"
    assert "'busy'" in limited.json()["message"]
    for _ in range(10):  # reads are not counted
        assert (await client.get(f"{API}/sessions", headers=first)).status_code == 200
    # Another token has its own allowance; nothing of the refused request was stored.
    assert (await client.post(f"{API}/sessions", json=body, headers=other)).status_code == 201
    assert (await client.get(f"{API}/sessions", headers=other)).json()["total"] == 6


def test_no_secret_reaches_the_logs_or_the_metrics(tmp_path: Path) -> None:
    env = {
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "LOG_LEVEL": "DEBUG",
        "AUTH_REQUIRED": "true",
        "SECRET_KEY": SECRET,
        "AGENT_REGISTRATION_TOKEN": REGISTRATION,
    }
    with ServerProcess(env, tmp_path / "server") as server:
        server.start()
        made = run_cli(
            "token", "create", "--name", "ops", env=orchestrator_env(**env), cwd=tmp_path
        )
        operator = made.stdout.strip()
        assert operator.startswith("orch_")
        wrong = "orch_" + "w" * 43
        with server.client() as http:
            bearer = {"Authorization": f"Bearer {operator}"}
            http.post(f"{API}/sessions", json={"title": "t", "initial_prompt": "p"}, headers=bearer)
            http.get(f"{API}/sessions", headers={"Authorization": f"Bearer {wrong}"})
            http.post("/login", data={"token": wrong})
            http.post("/login", data={"token": operator}, follow_redirects=False)
            registered = http.post(
                f"{API}/agents/external/register",
                headers={"Authorization": f"Bearer {REGISTRATION}"},
                json={
                    "protocol_version": "1.0",
                    "name": "leaky",
                    "version": "1",
                    "agent_type": "implementer",
                    "capabilities": ["code_generation"],
                },
            )
            agent_token = registered.json()["auth_token"]
            http.post(
                f"{API}/agents/external/{registered.json()['agent_id']}/heartbeat",
                headers={
                    "Authorization": f"Bearer {agent_token}",
                    "X-Agent-ID": registered.json()["agent_id"],
                },
                json={"status": "healthy"},
            )
            metrics = http.get("/metrics", headers=bearer).text
        server.terminate()
        output = server.current.stdout + server.current.stderr + made.stderr
    assert '"event": "http_request"' in output  # the server did log the requests
    for secret in [operator, wrong, REGISTRATION, agent_token, SECRET]:
        assert secret not in output, "a secret was written to the logs"
        assert secret not in metrics, "a secret was exported to /metrics"
    assert "http_request" in metrics  # the metrics were really read
