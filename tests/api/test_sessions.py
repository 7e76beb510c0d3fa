"""Sessions API: creation, reading, listing, stats and the state table, on SQLite and
PostgreSQL."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from .helpers import API, act, create, history


async def test_create_returns_the_recorded_session(client, tmp_path: Path):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    response = await client.post(
        f"{API}/sessions",
        json={
            "title": "Add rate limiting",
            "initial_prompt": "Use a token bucket",
            "priority": "HIGH",
            "workspace": str(workspace),
            "metadata": {"ticket": "OPS-12", "tags": ["api"]},
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/api/v1/sessions/{body['id']}"
    assert body["status"] == "PENDING"
    assert body["priority"] == "HIGH"
    assert body["workspace"] == str(workspace.resolve())
    # No working tree until the engine first runs it.
    assert (body["worktree"], body["branch"], body["base_commit"]) == (None, None, None)
    assert body["metadata"] == {"ticket": "OPS-12", "tags": ["api"]}
    assert body["version"] == 1
    assert body["status_emoji"]
    assert body["status_color"] == "#6B7280"
    assert body["allowed_actions"] == ["start", "fail", "cancel"]
    fetched = await client.get(f"{API}/sessions/{body['id']}")
    assert fetched.json() == body


ALLOWED_ROOTS = [str(Path(tempfile.gettempdir()).resolve())]  # WORKSPACE_ROOTS of the tests


async def refused_workspace(client, workspace: str) -> dict[str, Any]:
    response = await client.post(
        f"{API}/sessions", json={"title": "t", "initial_prompt": "p", "workspace": workspace}
    )
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()
    assert error["error"] == "invalid_workspace"
    assert error["details"]["field"] == "workspace"
    assert (await client.get(f"{API}/sessions")).json()["total"] == 0
    return error


async def test_a_workspace_outside_the_roots_is_refused_naming_them(client):
    error = await refused_workspace(client, "/etc")
    assert "'/etc'" in error["message"]
    assert "not inside an allowed workspace root" in error["message"]
    assert error["details"]["allowed_roots"] == ALLOWED_ROOTS
    assert all(repr(root) in error["message"] for root in ALLOWED_ROOTS)


async def test_a_symlink_leading_out_of_the_roots_is_refused(client, tmp_path: Path):
    (tmp_path / "to-etc").symlink_to("/etc")
    error = await refused_workspace(client, str(tmp_path / "to-etc"))
    assert "not inside an allowed workspace root" in error["message"]
    assert error["details"]["allowed_roots"] == ALLOWED_ROOTS
    # A symlink that stays inside the roots is fine: the session records the real path.
    (tmp_path / "real").mkdir()
    (tmp_path / "to-real").symlink_to(tmp_path / "real")
    session = await create(client, workspace=str(tmp_path / "to-real"))
    assert session["workspace"] == str((tmp_path / "real").resolve())


@pytest.mark.parametrize("kind", ["missing", "file"])
async def test_a_workspace_that_is_not_a_directory_is_refused(client, tmp_path: Path, kind):
    workspace = tmp_path / kind
    if kind == "file":
        workspace.write_text("not a directory")
    error = await refused_workspace(client, str(workspace))
    assert f"workspace '{workspace}' is not a directory" in error["message"]
    assert error["details"]["workspace"] == str(workspace)


async def test_a_workspace_inside_the_orchestrators_home_is_refused(client, tmp_path: Path):
    # The test settings keep ORCHESTRATOR_HOME at tmp_path / "home", under the roots.
    inside = tmp_path / "home" / "repo"
    inside.mkdir(parents=True)
    error = await refused_workspace(client, str(inside))
    assert "inside the orchestrator's data directory" in error["message"]
    assert "ORCHESTRATOR_HOME" in error["message"]


async def test_default_priority_comes_from_settings(client):
    assert (await create(client))["priority"] == "MEDIUM"


@pytest.mark.settings(default_session_priority="LOW")
async def test_default_priority_setting_is_honoured(client):
    assert (await create(client))["priority"] == "LOW"


async def test_auto_start_runs_the_session_in_the_same_request(client):
    session = await create(client, auto_start=True)
    assert session["status"] == "RUNNING"
    assert session["phase"] == "PLANNING"
    assert [r["to_state"] for r in await history(client, session["id"])] == ["PENDING", "RUNNING"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"initial_prompt": "p"}, "title"),
        ({"title": "", "initial_prompt": "p"}, "title"),
        ({"title": "   ", "initial_prompt": "p"}, "title"),
        ({"title": "x" * 201, "initial_prompt": "p"}, "title"),
        ({"title": "t"}, "initial_prompt"),
        ({"title": "t", "initial_prompt": ""}, "initial_prompt"),
        ({"title": "t", "initial_prompt": "é" * (128 * 1024 + 1)}, "initial_prompt"),
        ({"title": "t", "initial_prompt": "p", "priority": "URGENT"}, "priority"),
        ({"title": "t", "initial_prompt": "p", "colour": "red"}, "colour"),
        ({"title": "t", "initial_prompt": "p", "metadata": [1]}, "metadata"),
        ({"title": 5, "initial_prompt": "p"}, "title"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(client, body, field):
    response = await client.post(f"{API}/sessions", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "validation_error"
    assert field in [problem["field"] for problem in error["details"]]
    assert field in error["message"]
    assert (await client.get(f"{API}/sessions")).json()["total"] == 0


async def test_prompt_limits_are_inclusive(client):
    await create(client, title="x" * 200, initial_prompt="p" * (256 * 1024))


async def test_malformed_json_is_a_422_not_a_500(client):
    response = await client.post(
        f"{API}/sessions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_oversized_body_is_413(client):
    response = await client.post(
        f"{API}/sessions",
        json={"title": "t", "initial_prompt": "p" * (5 * 1024 * 1024)},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_oversized_chunked_body_is_413_too(client):
    """Without Content-Length the cap trips while the app reads the body: the app's own
    answer to the cut-off read (a parse error) must not replace the 413."""

    async def chunks() -> Any:
        yield b'{"title": "t", "initial_prompt": "'
        for _ in range(10):
            yield b"p" * (1024 * 1024)
        yield b'"}'

    response = await client.post(
        f"{API}/sessions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert (await client.get(f"{API}/sessions")).json()["total"] == 0


async def test_unknown_and_malformed_ids(client):
    missing = await client.get(f"{API}/sessions/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    for path in ("transitions", "checkpoints"):
        assert (await client.get(f"{API}/sessions/{uuid.uuid4()}/{path}")).status_code == 404
    assert (await client.post(f"{API}/sessions/{uuid.uuid4()}/start")).status_code == 404
    malformed = await client.get(f"{API}/sessions/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["details"][0]["field"] == "session_id"


async def test_unknown_route_uses_the_error_shape(client):
    response = await client.get(f"{API}/nothing-here")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "message", "details"}


class TestListing:
    async def test_newest_first_with_pagination(self, client):
        ids = [(await create(client, title=f"s{i}"))["id"] for i in range(5)]
        first = (await client.get(f"{API}/sessions", params={"page_size": 2})).json()
        assert first["total"] == 5
        assert (first["page"], first["page_size"]) == (1, 2)
        assert [s["id"] for s in first["items"]] == ids[::-1][:2]
        third = (await client.get(f"{API}/sessions", params={"page": 3, "page_size": 2})).json()
        assert [s["id"] for s in third["items"]] == [ids[0]]
        beyond = (await client.get(f"{API}/sessions", params={"page": 9, "page_size": 2})).json()
        assert beyond["items"] == []
        assert beyond["total"] == 5

    async def test_filter_by_several_states_and_priority(self, client):
        running = await create(client, auto_start=True, priority="HIGH")
        failed = await create(client)
        await act(client, failed["id"], "fail", reason="broken")
        await create(client, priority="HIGH")
        response = await client.get(
            f"{API}/sessions", params=[("status", "RUNNING"), ("status", "FAILED")]
        )
        assert {s["id"] for s in response.json()["items"]} == {running["id"], failed["id"]}
        high_running = await client.get(
            f"{API}/sessions", params={"status": "RUNNING", "priority": "HIGH"}
        )
        assert [s["id"] for s in high_running.json()["items"]] == [running["id"]]

    async def test_search_in_title_and_prompt_case_insensitively(self, client):
        a = await create(client, title="Fix the LOGIN page", initial_prompt="x")
        b = await create(client, title="other", initial_prompt="login throttling")
        await create(client, title="unrelated", initial_prompt="y")
        found = (await client.get(f"{API}/sessions", params={"q": "Login"})).json()
        assert {s["id"] for s in found["items"]} == {a["id"], b["id"]}

    async def test_search_treats_wildcards_literally(self, client):
        await create(client, title="100% done")
        await create(client, title="1000 things")
        found = (await client.get(f"{API}/sessions", params={"q": "100%"})).json()
        assert [s["title"] for s in found["items"]] == ["100% done"]

    @pytest.mark.parametrize(
        "params",
        [
            {"page": 0},
            {"page_size": 0},
            {"page_size": 101},
            {"status": "DONE"},
            {"priority": "NOW"},
            {"page": "x"},
        ],
    )
    async def test_bad_query_parameters_are_422(self, client, params):
        response = await client.get(f"{API}/sessions", params=params)
        assert response.status_code == 422
        assert response.json()["error"] == "validation_error"


async def test_stats_count_states_success_rate_and_durations(client):
    done = await create(client, auto_start=True)
    await act(client, done["id"], "complete")
    failed = await create(client, auto_start=True)
    await act(client, failed["id"], "fail", reason="tests red")
    await create(client, auto_start=True)
    await create(client)
    stats = (await client.get(f"{API}/sessions/stats")).json()
    assert stats["total"] == 4
    assert stats["by_state"]["COMPLETED"] == 1
    assert stats["by_state"]["FAILED"] == 1
    assert stats["by_state"]["RUNNING"] == 1
    assert stats["by_state"]["PENDING"] == 1
    assert set(stats["by_state"]) == {
        "PENDING",
        "QUEUED",
        "RUNNING",
        "PAUSED",
        "COMPLETED",
        "PARTIALLY_COMPLETED",
        "FAILED",
        "TIMEOUT",
        "STOPPED",
        "CANCELLED",
        "ORPHANED",
        "DEGRADED",
    }
    assert stats["running"] == 1
    assert stats["success_rate"] == pytest.approx(0.5)
    assert stats["average_duration_seconds"] >= 0
    assert stats["tokens_used"] == 0
    assert stats["cost_usd"] == 0
    # What the operator ended is counted apart and leaves the rate alone.
    stopped = await create(client, auto_start=True)
    await act(client, stopped["id"], "stop")
    await act(client, (await create(client))["id"], "cancel")
    stats = (await client.get(f"{API}/sessions/stats")).json()
    assert (stats["by_state"]["STOPPED"], stats["by_state"]["CANCELLED"]) == (1, 1)
    assert stats["success_rate"] == pytest.approx(0.5)
    assert {
        key: stats[key] for key in ("succeeded", "failed", "ended_by_operator", "orphaned")
    } == {"succeeded": 1, "failed": 1, "ended_by_operator": 2, "orphaned": 0}


async def test_stats_on_an_empty_database(client):
    stats = (await client.get(f"{API}/sessions/stats")).json()
    assert stats["total"] == 0
    assert stats["success_rate"] is None
    assert stats["average_duration_seconds"] is None


async def test_state_reference_table(client):
    states = (await client.get(f"{API}/sessions/states")).json()
    assert [s["state"] for s in states][:3] == ["PENDING", "QUEUED", "RUNNING"]
    assert len(states) == 12
    by_name = {s["state"]: s for s in states}
    assert by_name["COMPLETED"]["terminal"] is True
    assert by_name["COMPLETED"]["transitions"] == []
    assert by_name["DEGRADED"]["color"] == "#F97316"
    assert by_name["PAUSED"]["actions"] == ["resume", "cancel", "stop"]
    assert "retry" in by_name["FAILED"]["actions"]


async def test_body_that_is_not_utf8_is_a_422(client):
    response = await client.post(
        f"{API}/sessions", content=b"\xff", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body"


@pytest.mark.parametrize("value", ["yes", 0, 1, "true"])
async def test_auto_start_must_be_a_real_boolean(client, value):
    response = await client.post(
        f"{API}/sessions", json={"title": "t", "initial_prompt": "p", "auto_start": value}
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "auto_start"


async def test_empty_idempotency_key_is_refused(client):
    response = await client.post(
        f"{API}/sessions",
        json={"title": "t", "initial_prompt": "p"},
        headers={"Idempotency-Key": ""},
    )
    assert response.status_code == 422
