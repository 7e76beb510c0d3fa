"""The External Agent Protocol over the API, on SQLite and PostgreSQL: registration,
tokens, pull tasking with leases, results with artifacts, fencing and reaping."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest

from industrial_orchestrator.api.agent_tokens import AUDIENCE, ISSUER, AgentTokens
from industrial_orchestrator.domain.errors import Unauthorized

from .helpers import API, act, create

EXTERNAL = f"{API}/agents/external"
SECRET = "test-secret-key-that-is-long-enough-0123456789"

pytestmark = pytest.mark.settings(secret_key=SECRET)


class Agent:
    """An external agent's side of the protocol, speaking through the test client."""

    def __init__(self, client: Any, registered: dict[str, Any]) -> None:
        self.client = client
        self.id: str = registered["agent_id"]
        self.token: str = registered["auth_token"]

    def headers(self, token: str | None = None, agent_id: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token}",
            "X-Agent-ID": agent_id or self.id,
        }

    async def beat(self, expect: int = 200, **body: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"{EXTERNAL}/{self.id}/heartbeat",
            json={"status": "healthy", **body},
            headers=self.headers(),
        )
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def pull(self, expect: int | None = 200, wait: float = 0) -> dict[str, Any] | None:
        """The assignment, or None for 204; ``expect=None`` accepts either."""
        response = await self.client.post(
            f"{EXTERNAL}/{self.id}/tasks/next",
            params={"wait_seconds": wait},
            headers=self.headers(),
        )
        allowed = (200, 204) if expect is None else (expect,)
        assert response.status_code in allowed, response.text
        return None if response.status_code == 204 else dict(response.json())

    async def report(
        self, task_id: str, expect: int = 200, *, as_agent: Agent | None = None, **body: Any
    ) -> dict[str, Any]:
        response = await self.client.post(
            f"{EXTERNAL}/{self.id}/tasks/{task_id}/result",
            json={"task_id": task_id, "status": "completed", **body},
            headers=(as_agent or self).headers(),
        )
        assert response.status_code == expect, response.text
        return dict(response.json())


async def register(client: Any, expect: int = 201, headers: Any = None, **fields: Any) -> Any:
    body = {
        "protocol_version": "1.0",
        "name": "AGENT-EXT-PYTHON-01",
        "version": "1.2.0",
        "agent_type": "implementer",
        "capabilities": ["code_generation", "python_expert"],
        "endpoint_url": "http://agent-service:8080",
        "metadata": {"maintainer": "DevOps Team"},
        **fields,
    }
    response = await client.post(f"{EXTERNAL}/register", json=body, headers=headers or {})
    assert response.status_code == expect, response.text
    return Agent(client, response.json()) if expect == 201 else response.json()


async def ready_task(client: Any, *caps: str, **fields: Any) -> dict[str, Any]:
    body = {
        "title": fields.pop("title", "Write the auth router"),
        "task_type": "code_generation",
        "required_capabilities": list(caps or ("python_expert",)),
        **fields,
    }
    created = await client.post(f"{API}/tasks", json=body)
    assert created.status_code == 201, created.text
    moved = await client.patch(f"{API}/tasks/{created.json()['id']}", json={"status": "READY"})
    assert moved.status_code == 200, moved.text
    return dict(moved.json())


async def task(client: Any, task_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def attempts(client: Any, task_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/tasks/{task_id}/attempts")
    assert response.status_code == 200, response.text
    return list(response.json())


async def agent_record(client: Any, agent_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/agents/{agent_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def event_types(client: Any) -> list[str]:
    response = await client.get(f"{API}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return [event["type"] for event in response.json()["items"]]


# Registration ----------------------------------------------------------------------------


async def test_registration_answers_a_signed_token_for_an_external_agent(client):
    agent = await register(client)
    claims = jwt.decode(agent.token, SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["sub"] == agent.id
    assert claims["iss"] == ISSUER
    assert claims["exp"] > claims["iat"]
    assert len(claims["jti"]) >= 16
    record = await agent_record(client, agent.id)
    assert record["kind"] == "external"
    assert record["status"] == "healthy"
    assert record["capabilities"] == ["code_generation", "python_expert"]
    assert record["metadata"]["endpoint_url"] == "http://agent-service:8080"
    assert record["metadata"]["maintainer"] == "DevOps Team"


async def test_unknown_protocol_version_is_a_400_naming_the_supported_ones(client):
    body = await register(client, expect=400, protocol_version="2.0")
    assert body["error"] == "unsupported_protocol_version"
    assert body["details"]["supported"] == ["1.0"]
    assert "2.0" in body["message"]


async def test_registration_refuses_unknown_fields(client):
    await register(client, expect=422, shoe_size=42)


async def test_registering_a_name_again_resumes_that_agent_with_its_lease(client):
    # How a worker whose token the server no longer accepts (a new SECRET_KEY, a long
    # outage) comes back: as the same agent, still holding the task it was working on.
    first = await register(client)
    item = await ready_task(client)
    assignment = await first.pull()
    assert assignment is not None
    again = await register(
        client,
        capabilities=["code_generation", "python_expert", "testing"],
        metadata={"maintainer": "Platform Team"},
    )
    assert again.id == first.id
    record = await agent_record(client, again.id)
    assert record["capabilities"] == ["code_generation", "python_expert", "testing"]
    assert record["metadata"]["maintainer"] == "Platform Team"
    named = (await client.get(f"{API}/agents", params={"page_size": 100})).json()["items"]
    assert [a["id"] for a in named if a["name"] == "AGENT-EXT-PYTHON-01"] == [first.id]
    # The lease survived: the result, sent with the new token, is recorded.
    await again.report(item["id"], attempt=assignment["attempt"])
    assert (await task(client, item["id"]))["status"] == "COMPLETED"


async def test_the_name_of_one_of_our_own_agents_cannot_be_registered(client):
    internal = await client.post(
        f"{API}/agents",
        json={
            "name": "AGENT-EXT-PYTHON-01",
            "agent_type": "implementer",
            "capabilities": ["python_expert"],
        },
    )
    assert internal.status_code == 201, internal.text
    refused = await register(client, expect=409)
    assert "AGENT-EXT-PYTHON-01" in refused["message"]


@pytest.mark.settings(secret_key=SECRET, agent_registration_token="let-me-in-please")
async def test_registration_token_is_required_when_set(client):
    missing = await register(client, expect=401)
    assert "AGENT_REGISTRATION_TOKEN" in missing["message"]
    await register(client, expect=401, headers={"Authorization": "Bearer wrong"})
    agent = await register(client, headers={"Authorization": "Bearer let-me-in-please"})
    # The registration token is not an agent token.
    response = await client.post(
        f"{EXTERNAL}/{agent.id}/heartbeat",
        json={"status": "healthy"},
        headers=agent.headers(token="let-me-in-please"),
    )
    assert response.status_code == 401


# Tokens ----------------------------------------------------------------------------------


def _forged_none(agent_id: str) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": agent_id, "aud": AUDIENCE, "iss": ISSUER, "iat": now}
    claims |= {"exp": now + 600, "jti": "x" * 32}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _signed(agent_id: str, key: str = SECRET, **overrides: Any) -> str:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": agent_id, "aud": AUDIENCE, "iss": ISSUER, "iat": now}
    claims |= {"exp": now + 600, "jti": "y" * 32, **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="HS256")


async def test_bad_tokens_are_all_refused_with_401(client):
    agent = await register(client)
    expired = AgentTokens(
        SECRET,
        lifetime=timedelta(minutes=1),
        clock=lambda: datetime.now(UTC) - timedelta(hours=1),
    ).issue(UUID(agent.id))
    bad = {
        "expired": expired.token,
        "forged (other key)": _signed(agent.id, key="another-secret-key-of-sufficient-length"),
        "alg=none": _forged_none(agent.id),
        "wrong audience": _signed(agent.id, aud="industrial-orchestrator:operators"),
        "wrong issuer": _signed(agent.id, iss="someone-else"),
        "no jti": _signed(agent.id, jti=None),
        "garbage": "not-a-jwt",
        "HS512": jwt.encode({"sub": agent.id}, SECRET + "x" * 40, algorithm="HS512"),
    }
    for name, token in bad.items():
        response = await client.post(
            f"{EXTERNAL}/{agent.id}/heartbeat",
            json={"status": "healthy"},
            headers=agent.headers(token=token),
        )
        assert response.status_code == 401, (name, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    no_header = await client.post(f"{EXTERNAL}/{agent.id}/heartbeat", json={"status": "healthy"})
    assert no_header.status_code == 401
    wrong_id = await client.post(
        f"{EXTERNAL}/{agent.id}/heartbeat",
        json={"status": "healthy"},
        headers=agent.headers(agent_id="00000000-0000-0000-0000-000000000000"),
    )
    assert wrong_id.status_code == 401
    # The genuine token still works.
    await agent.beat()


async def test_deregistering_revokes_the_agents_tokens(client):
    agent = await register(client)
    item = await ready_task(client)
    assert await agent.pull() is not None
    left = await client.delete(f"{EXTERNAL}/{agent.id}", headers=agent.headers())
    assert left.status_code == 204
    refused = await agent.beat(expect=401)
    assert "register again" in refused["message"]
    # Told apart from a token that no longer verifies, which a worker answers by
    # registering again: a removed agent's worker stops instead.
    assert refused["error"] == "agent_removed"
    # Its result too, before the lease it lost is looked at (its record is read in the
    # result's own transaction, not by the authentication).
    late = await agent.report(item["id"], expect=401, attempt=1)
    assert late["error"] == "agent_removed"
    asking = await agent.pull(expect=401)
    assert asking is not None
    assert asking["error"] == "agent_removed"
    other_key = _signed(agent.id, key="another-secret-key-of-sufficient-length")
    forged = await client.post(
        f"{EXTERNAL}/{agent.id}/heartbeat",
        json={"status": "healthy"},
        headers=agent.headers(token=other_key),
    )
    assert forged.status_code == 401
    assert forged.json()["error"] == "unauthorized"
    gone = await client.get(f"{API}/agents/{agent.id}")
    assert gone.status_code == 404


async def test_heartbeat_renews_the_token_and_records_what_the_agent_says(client):
    agent = await register(client)
    ack = await agent.beat(
        status="degraded", current_load=0.5, tasks_in_progress=2, metrics={"memory_usage_mb": 128}
    )
    assert ack["status"] == "degraded"
    record = await agent_record(client, agent.id)
    assert record["metadata"]["metrics"] == {
        "memory_usage_mb": 128,
        "reported_tasks_in_progress": 2,
    }
    assert record["current_load"] == 0.5
    assert record["tasks_in_progress"] == 0  # leases are counted by the orchestrator
    assert ack["auth_token"] != agent.token
    assert (
        jwt.decode(ack["auth_token"], SECRET, algorithms=["HS256"], audience=AUDIENCE)["sub"]
        == agent.id
    )
    agent.token = ack["auth_token"]
    await agent.beat()
    assert (await agent_record(client, agent.id))["status"] == "healthy"


async def test_an_agent_cannot_act_as_another(client):
    a = await register(client, name="A")
    b = await register(client, name="B")
    item = await ready_task(client)
    held = await b.pull()
    assert held is not None
    as_b = {"Authorization": f"Bearer {a.token}", "X-Agent-ID": a.id}
    for path, body in [
        (f"{EXTERNAL}/{b.id}/heartbeat", {"status": "offline"}),
        (f"{EXTERNAL}/{b.id}/tasks/next", None),
        (
            f"{EXTERNAL}/{b.id}/tasks/{item['id']}/result",
            {"task_id": item["id"], "status": "completed"},
        ),
    ]:
        response = await client.post(path, json=body, headers=as_b)
        assert response.status_code == 403, (path, response.text)
    # A's own identity cannot report B's task either.
    stolen = await a.report(item["id"], expect=409, attempt=1)
    assert stolen["error"] == "lease_lost"
    assert (await task(client, item["id"]))["status"] == "RUNNING"
    assert (await agent_record(client, a.id))["success_count"] == 0
    assert (await agent_record(client, b.id))["status"] == "healthy"
    deleted = await client.delete(f"{EXTERNAL}/{b.id}", headers=as_b)
    assert deleted.status_code == 403


# Pull tasking ------------------------------------------------------------------------------


async def test_pull_leases_a_matching_ready_task_once(client):
    agent = await register(client)
    other = await register(client, name="B", capabilities=["python_expert"])
    assert await agent.pull(expect=204) is None
    await ready_task(client, "rust", title="Needs rust")
    wanted = await ready_task(client, "python_expert", "code_generation", title="Python work")
    assignment = await agent.pull()
    assert assignment is not None
    assert assignment["task_id"] == wanted["id"]
    assert assignment["attempt"] == 1
    assert assignment["title"] == "Python work"
    assert assignment["requirements"] == ["code_generation", "python_expert"]
    assert assignment["timeout_seconds"] == 3600
    assert datetime.fromisoformat(assignment["lease_expires_at"]) > datetime.now(UTC)
    leased = await task(client, wanted["id"])
    assert leased["status"] == "RUNNING"
    assert leased["attempt"] == 1
    # Nobody else gets it, and nobody gets the task no agent can do.
    assert await other.pull(expect=204) is None
    record = await agent_record(client, agent.id)
    assert record["tasks_in_progress"] == 1
    assert record["current_load"] == 1.0
    full = await agent.pull(expect=409)
    assert full["error"] == "agent_not_accepting"
    types = await event_types(client)
    assert "task.leased" in types


async def test_session_tasks_are_handed_out_only_while_the_session_runs(client):
    agent = await register(client)
    session = await create(client)
    await ready_task(client, session_id=session["id"])
    assert await agent.pull(expect=204) is None
    await act(client, session["id"], "start")
    assignment = await agent.pull()
    assert assignment is not None
    assert assignment["session_id"] == session["id"]


async def test_long_poll_returns_a_task_that_becomes_ready_while_waiting(client):
    agent = await register(client)
    waiting = asyncio.create_task(agent.pull(wait=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    item = await ready_task(client)
    assignment = await asyncio.wait_for(waiting, 10)
    assert assignment is not None
    assert assignment["task_id"] == item["id"]


async def test_busy_or_offline_agents_get_no_work(client):
    agent = await register(client)
    await ready_task(client)
    await agent.beat(status="busy")
    refused = await agent.pull(expect=409)
    assert "busy" in refused["message"]
    await agent.beat(status="healthy")
    assert await agent.pull() is not None


# Results --------------------------------------------------------------------------------


async def test_completed_result_records_artifacts_usage_and_the_agents_record(client):
    agent = await register(client)
    session = await create(client, workspace=None)
    await act(client, session["id"], "start")
    item = await ready_task(client, session_id=session["id"])
    assignment = await agent.pull()
    assert assignment is not None
    content = "from fastapi import APIRouter\n"
    ack = await agent.report(
        item["id"],
        attempt=1,
        artifacts=[
            {"path": "app/auth_router.py", "content": content, "mime_type": "text/x-python"},
            {
                "path": "logo.bin",
                "content": base64.b64encode(b"\x00\x01").decode(),
                "encoding": "base64",
            },
        ],
        output_data={"summary": "Router written", "tests_passed": True},
        execution_time_ms=1500,
        tokens_used=450,
        cost_usd=0.023,
    )
    assert ack["task_status"] == "COMPLETED"
    assert ack["written"] == ["app/auth_router.py", "logo.bin"]
    by_path = {a["path"]: a for a in ack["artifacts"]}
    assert by_path["app/auth_router.py"]["sha256"] == hashlib.sha256(content.encode()).hexdigest()
    assert by_path["app/auth_router.py"]["mime_type"] == "text/x-python"
    assert by_path["logo.bin"]["size_bytes"] == 2
    done = await task(client, item["id"])
    assert done["status"] == "COMPLETED"
    assert done["result_summary"] == "Router written"
    record = await agent_record(client, agent.id)
    assert (record["success_count"], record["tasks_in_progress"]) == (1, 0)
    assert record["current_load"] == 0.0
    shown = (await client.get(f"{API}/sessions/{session['id']}")).json()
    assert shown["tokens_used"] == 450
    assert shown["cost_usd"] == pytest.approx(0.023)
    history = await attempts(client, item["id"])
    assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "completed")]
    assert history[0]["tokens_used"] == 450
    listed = (await client.get(f"{API}/tasks/{item['id']}/artifacts")).json()
    assert [a["path"] for a in listed] == ["app/auth_router.py", "logo.bin"]
    # A second result for the same attempt is refused: it is over.
    again = await agent.report(item["id"], expect=409, attempt=1)
    assert again["error"] == "lease_lost"


async def test_artifacts_are_written_inside_the_session_workspace(client, tmp_path: Path):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    agent = await register(client)
    session = await create(client, workspace=str(workspace))
    await act(client, session["id"], "start")
    item = await ready_task(client, session_id=session["id"])
    await agent.pull()
    await agent.report(item["id"], artifacts=[{"path": "src/a.py", "content": "x = 1\n"}])
    assert (workspace / "src" / "a.py").read_text() == "x = 1\n"


async def test_artifact_paths_escaping_the_workspace_are_refused_and_nothing_is_recorded(
    client, tmp_path: Path
):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "escape").symlink_to(outside)
    agent = await register(client)
    session = await create(client, workspace=str(workspace))
    await act(client, session["id"], "start")
    item = await ready_task(client, session_id=session["id"])
    await agent.pull()
    for path in ["../evil.py", "/etc/passwd", "a\\b.py", "a/\x00.py", "escape/evil.py", "C:x"]:
        refused = await agent.report(
            item["id"], expect=422, artifacts=[{"path": path, "content": "boom"}]
        )
        # A NUL is text no field may hold: the edge refuses it before the path rule looks.
        expected = "validation_error" if "\x00" in path else "artifact_path_refused"
        assert refused["error"] == expected, refused
    assert list(outside.iterdir()) == []
    assert (await task(client, item["id"]))["status"] == "RUNNING"
    assert [h["outcome"] for h in await attempts(client, item["id"])] == [None]


@pytest.mark.settings(secret_key=SECRET, artifact_max_bytes=10, artifact_max_count=2)
async def test_artifact_size_and_count_are_capped_with_413(client):
    agent = await register(client)
    item = await ready_task(client)
    await agent.pull()
    too_big = await agent.report(
        item["id"], expect=413, artifacts=[{"path": "a.txt", "content": "x" * 11}]
    )
    assert too_big["details"]["limit"] == 10
    too_many = await agent.report(
        item["id"],
        expect=413,
        artifacts=[{"path": f"{n}.txt", "content": "x"} for n in range(3)],
    )
    assert too_many["details"]["limit"] == 2
    assert (await task(client, item["id"]))["status"] == "RUNNING"
    await agent.report(item["id"], artifacts=[{"path": "a.txt", "content": "x" * 10}])


@pytest.mark.settings(secret_key=SECRET, task_max_attempts=2)
async def test_failed_results_requeue_the_task_until_attempts_run_out(client):
    agent = await register(client)
    item = await ready_task(client)
    first = await agent.pull()
    assert first is not None
    ack = await agent.report(item["id"], status="failed", error="tests did not pass", attempt=1)
    assert ack["task_status"] == "READY"
    second = await agent.pull()
    assert second is not None
    assert second["attempt"] == 2
    late = await agent.report(item["id"], expect=409, attempt=1)
    assert "Attempt 1" in late["message"]
    ack = await agent.report(item["id"], status="failed", error="still failing", attempt=2)
    assert ack["task_status"] == "FAILED"
    failed = await task(client, item["id"])
    assert failed["result_summary"] == "attempt 2 failed: still failing"
    assert await agent.pull(expect=204) is None
    record = await agent_record(client, agent.id)
    assert record["failure_count"] == 2


async def test_result_body_must_name_the_task_in_the_url(client):
    agent = await register(client)
    one = await ready_task(client, title="one")
    await agent.pull()
    response = await client.post(
        f"{EXTERNAL}/{agent.id}/tasks/{one['id']}/result",
        json={"task_id": "00000000-0000-0000-0000-000000000001", "status": "completed"},
        headers=agent.headers(),
    )
    assert response.status_code == 422
    missing = await client.post(
        f"{EXTERNAL}/{agent.id}/tasks/00000000-0000-0000-0000-000000000001/result",
        json={"task_id": "00000000-0000-0000-0000-000000000001", "status": "completed"},
        headers=agent.headers(),
    )
    assert missing.status_code == 404


async def test_ten_successes_give_a_record_and_a_tier_change_event(client):
    agent = await register(client)
    for n in range(10):
        item = await ready_task(client, title=f"task {n}")
        await agent.pull()
        await agent.report(item["id"])
    record = await agent_record(client, agent.id)
    assert record["tier"] == "ELITE"
    response = await client.get(f"{API}/events", params={"type": "agent.tier_changed"})
    changes = [e["payload"] for e in response.json()["items"]]
    assert [(c["from"], c["to"]) for c in changes] == [("COMPETENT", "ELITE")]


# Leases: renewal, expiry, release --------------------------------------------------------


@pytest.mark.settings(secret_key=SECRET, task_lease_seconds=30)
async def test_heartbeats_renew_leases(client):
    agent = await register(client)
    item = await ready_task(client)
    assignment = await agent.pull()
    assert assignment is not None
    await asyncio.sleep(0.05)
    ack = await agent.beat()
    [lease] = ack["leases"]
    assert lease["task_id"] == item["id"]
    assert lease["attempt"] == 1
    assert datetime.fromisoformat(lease["lease_expires_at"]) > datetime.fromisoformat(
        assignment["lease_expires_at"]
    )


async def test_deregistering_returns_held_tasks_to_the_queue(client):
    agent = await register(client)
    other = await register(client, name="B")
    item = await ready_task(client)
    await agent.pull()
    await client.delete(f"{EXTERNAL}/{agent.id}", headers=agent.headers())
    back = await task(client, item["id"])
    assert (back["status"], back["attempt"]) == ("READY", 1)
    again = await other.pull()
    assert again is not None
    assert again["attempt"] == 2
    assert [h["outcome"] for h in await attempts(client, item["id"])] == ["released", None]


# Leases (1.2 s) long enough for a loaded machine to answer a live agent in time, and
# shorter than 3 missed beats (1.8 s), so the silent agent's lease expires first.
# The lease runs out before the silent agent misses 3 beats (3.0 s < 3 x 1.2 s). The
# rescuer's lease must outlast any stall between its beat and its step: a CI run once
# stalled a request 2.6 s, past a lease of 1.2 s.
@pytest.mark.settings(
    secret_key=SECRET, task_lease_seconds=3.0, agent_heartbeat_seconds=1.2, reaper_seconds=0.1
)
async def test_silent_agents_go_offline_and_their_tasks_go_to_someone_else(client):
    zombie = await register(client, name="zombie")
    item = await ready_task(client)
    await zombie.pull()
    rescuer = await register(client, name="rescuer")
    taken_over: dict[str, Any] | None = None
    for _ in range(100):
        await rescuer.beat()
        taken_over = await rescuer.pull(expect=None, wait=0.1)
        if taken_over is not None:
            break
    assert taken_over is not None
    assert taken_over["attempt"] == 2
    # The lease ran out before the agent missed 3 beats: now it is gone too.
    for _ in range(100):
        if (await agent_record(client, zombie.id))["status"] == "offline":
            break
        await rescuer.beat()
        await asyncio.sleep(0.05)
    assert (await agent_record(client, zombie.id))["status"] == "offline"
    # The rescuer beats right before each step, as a live agent would.
    await rescuer.beat()
    assert (await agent_record(client, rescuer.id))["status"] == "healthy"
    late = await zombie.report(item["id"], expect=409, attempt=1)
    assert late["error"] == "lease_lost"
    await rescuer.beat()
    await rescuer.report(item["id"], attempt=2)
    history = await attempts(client, item["id"])
    assert [h["outcome"] for h in history] == ["expired", "completed"]
    assert history[1]["agent_id"] == rescuer.id
    assert (await agent_record(client, zombie.id))["failure_count"] == 1
    types = await event_types(client)
    assert "task.attempt_ended" in types
    assert "agent.status_changed" in types


async def test_a_heartbeat_naming_its_tasks_renews_only_those(client):
    agent = await register(client, max_concurrent_tasks=2)
    first = await ready_task(client, title="first")
    await ready_task(client, title="second")
    one, two = await agent.pull(), await agent.pull()
    assert one is not None
    assert two is not None
    ack = await agent.beat(task_ids=[first["id"]])
    assert [lease["task_id"] for lease in ack["leases"]] == [first["id"]]
    by_task = {a["task_id"]: a for a in (one, two)}
    renewed = datetime.fromisoformat(ack["leases"][0]["lease_expires_at"])
    assert renewed > datetime.fromisoformat(by_task[first["id"]]["lease_expires_at"])
    other = next(t for t in by_task if t != first["id"])
    [kept] = await attempts(client, other)
    assert datetime.fromisoformat(kept["lease_expires_at"]) == datetime.fromisoformat(
        by_task[other]["lease_expires_at"]
    )


@pytest.mark.parametrize("target", ["CANCELLED", "COMPLETED"])
async def test_a_task_an_operator_moves_on_is_taken_from_its_agent(client, target):
    agent = await register(client)
    item = await ready_task(client)
    await agent.pull()
    moved = await client.patch(f"{API}/tasks/{item['id']}", json={"status": target})
    assert moved.status_code == 200, moved.text
    # The lease ended with the move: the agent is told to stop, its slot is free, and the
    # task is not held against it.
    ack = await agent.beat(task_ids=[item["id"]])
    assert (ack["leases"], ack["abort"]) == ([], [item["id"]])
    assert [a["outcome"] for a in await attempts(client, item["id"])] == ["released"]
    record = await agent_record(client, agent.id)
    assert (record["tasks_in_progress"], record["failure_count"]) == (0, 0)
    late = await agent.report(item["id"], expect=409)
    assert late["error"] == "lease_lost"
    assert (await task(client, item["id"]))["status"] == target


async def test_a_fork_for_named_agents_is_worked_on_by_them_only(client):
    chosen = await register(client, name="chosen")
    other = await register(client, name="other", max_concurrent_tasks=2)
    source = await create(client, auto_start=True)
    made = await client.post(f"{API}/sessions/{source['id']}/checkpoints", json={"label": "l"})
    assert made.status_code == 201, made.text
    fork_url = f"{API}/sessions/{source['id']}/fork"
    unknown = await client.post(
        fork_url, json={"checkpoint_id": made.json()["id"], "agents": ["nobody"]}
    )
    assert unknown.status_code == 422
    assert "'nobody'" in unknown.json()["message"]
    forked = await client.post(
        fork_url, json={"checkpoint_id": made.json()["id"], "agents": ["chosen"], "start": True}
    )
    assert forked.status_code == 201, forked.text
    assert forked.json()["options"]["agents"] == ["chosen"]
    item = await ready_task(client, session_id=forked.json()["id"])
    # The source's own tasks are anyone's; the fork's only the chosen agent's.
    theirs = await ready_task(client, session_id=source["id"], title="source work")
    assert (await other.pull())["task_id"] == theirs["id"]
    assert await other.pull(expect=204) is None
    assert (await chosen.pull())["task_id"] == item["id"]


async def test_agents_stream_output_of_their_own_tasks_to_the_session(client):
    agent = await register(client)
    other = await register(client, name="B")
    session = await create(client)
    await act(client, session["id"], "start")
    item = await ready_task(client, session_id=session["id"])
    await agent.pull()
    url = f"{EXTERNAL}/{agent.id}/tasks/{item['id']}/logs"
    written = await client.post(
        url, json={"stream": "agent", "text": "thinking...\n"}, headers=agent.headers()
    )
    assert written.status_code == 201, written.text
    assert written.json() == {"events": 1}
    stolen = await client.post(
        f"{EXTERNAL}/{other.id}/tasks/{item['id']}/logs",
        json={"stream": "agent", "text": "not mine"},
        headers=other.headers(),
    )
    assert stolen.status_code == 409
    await agent.report(item["id"], tokens_used=7, cost_usd=0.5)
    events = (await client.get(f"{API}/sessions/{session['id']}/events")).json()["items"]
    logs = [e["payload"]["text"] for e in events if e["type"] == "session.log"]
    assert logs == ["thinking...\n"]
    [telemetry] = [e["payload"] for e in events if e["type"] == "session.telemetry"]
    assert (telemetry["tokens_used"], telemetry["cost_usd"]) == (7, 0.5)
    after = await client.post(
        url, json={"stream": "agent", "text": "late"}, headers=agent.headers()
    )
    assert after.status_code == 409  # the lease ended with the result


async def test_tasks_that_would_edit_the_same_files_run_one_after_another(client):
    agent = await register(client, max_concurrent_tasks=4)
    session = await create(client, auto_start=True)
    sid = session["id"]
    first = await ready_task(client, session_id=sid, title="app", files=["src/app.py"])
    same = await ready_task(client, session_id=sid, title="same", files=["src/"])
    other = await ready_task(client, session_id=sid, title="docs", files=["docs/guide.md"])
    free = await ready_task(client, session_id=sid, title="free")
    pulled = [(await agent.pull())["task_id"] for _ in range(3)]
    # "same" names a directory holding a file "app" edits: it waits; the rest run.
    assert pulled == [first["id"], other["id"], free["id"]]
    assert await agent.pull(expect=204) is None
    assert (await task(client, same["id"]))["status"] == "READY"
    await agent.report(first["id"], artifacts=[{"path": "lib/util.py", "content": "x"}])
    assert (await agent.pull())["task_id"] == same["id"]


async def test_files_an_earlier_attempt_touched_count_as_the_task_s(client):
    agent = await register(client, max_concurrent_tasks=4)
    sid = (await create(client, auto_start=True))["id"]
    retried = await ready_task(client, session_id=sid, title="retried")
    await agent.pull()
    # Its first attempt failed after writing lib/db.py: it is back in the queue.
    await agent.report(
        retried["id"],
        status="failed",
        error="boom",
        artifacts=[{"path": "lib/db.py", "content": "x"}],
    )
    blocker = await ready_task(client, session_id=sid, title="db", files=["lib/db.py"])
    # The blocker is newer, so the retried task comes first... unless the blocker runs.
    assert (await agent.pull())["task_id"] == retried["id"]
    assert await agent.pull(expect=204) is None
    assert (await task(client, blocker["id"]))["status"] == "READY"


async def test_task_files_must_stay_inside_the_workspace(client):
    for files in (["../x.py"], ["/etc/passwd"], ["a\\b"]):
        response = await client.post(
            f"{API}/tasks", json={"title": "t", "task_type": "testing", "files": files}
        )
        assert response.status_code == 422, (files, response.text)
    ok = await client.post(
        f"{API}/tasks", json={"title": "t", "task_type": "testing", "files": ["./src//a.py", "d/"]}
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["files"] == ["d/", "src/a.py"]


async def test_an_agent_cannot_speak_in_the_orchestrator_s_system_stream(client):
    agent = await register(client)
    session = await create(client)
    await act(client, session["id"], "start")
    item = await ready_task(client, session_id=session["id"])
    await agent.pull()
    url = f"{EXTERNAL}/{agent.id}/tasks/{item['id']}/logs"
    # The system stream says what the orchestrator did (and asks the operator for
    # permissions, which webhooks announce): an agent's text there could forge it.
    forged = await client.post(
        url,
        json={"stream": "system", "text": "permission needed: bash x (request per_1)"},
        headers=agent.headers(),
    )
    assert forged.status_code == 422, forged.text
    assert "stream" in forged.text
    own = await client.post(
        url, json={"stream": "tool", "text": "ran the tests\n"}, headers=agent.headers()
    )
    assert own.status_code == 201, own.text
    logs = (
        await client.get(f"{API}/sessions/{session['id']}/events", params={"type": "session.log"})
    ).json()["items"]
    assert [e["payload"]["stream"] for e in logs] == ["tool"]


async def test_the_heartbeat_interval_is_the_integer_the_guide_shows(client):
    # Strict clients decode the guide's `30` as an integer: `30.0` would not do.
    body = {
        "protocol_version": "1.0",
        "name": "strict-client",
        "version": "1",
        "agent_type": "implementer",
        "capabilities": ["python"],
    }
    registered = await client.post(f"{EXTERNAL}/register", json=body)
    assert registered.status_code == 201, registered.text
    assert '"heartbeat_interval_seconds":30}' in registered.text.replace(" ", "")
    assert type(registered.json()["heartbeat_interval_seconds"]) is int
    agent = Agent(client, registered.json())
    ack = await agent.beat()
    assert type(ack["heartbeat_interval_seconds"]) is int
    assert ack["heartbeat_interval_seconds"] == 30


def test_a_token_verified_before_is_still_refused_from_the_second_it_expires():
    """Verified tokens are remembered (an agent sends one with every request until its
    next heartbeat); remembered, one is still refused once expired, as PyJWT refuses it."""
    tokens = AgentTokens(SECRET, lifetime=timedelta(seconds=2), clock=lambda: datetime.now(UTC))
    agent_id = uuid4()
    issued = tokens.issue(agent_id)
    assert tokens.verify(issued.token) == agent_id
    assert tokens.verify(issued.token) == agent_id
    time.sleep(max(0.0, issued.expires_at.timestamp() - time.time()) + 1.1)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(issued.token)
