"""``orchestrator session create|list|show|start|pause|resume|stop|cancel|retry`` run as
real subprocesses against a real server: the JSON they print is the API's, the tables
show what the server holds, and every failure is one ``error:`` line and exit code 1."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from ..server_process import free_port, orchestrator_env, run_cli
from .helpers import API, cli_json, create, flat, session_cli

pytestmark = pytest.mark.slow


def test_create_prints_the_api_session_and_show_and_list_find_it(
    url: str, http: httpx.Client, workdir: Path, tmp_path: Path
):
    tag = uuid.uuid4().hex
    workspace = tmp_path / "repo"
    workspace.mkdir()
    created = cli_json(
        url,
        "create",
        f"Refactor {tag}",
        "--prompt",
        "Split the module",
        "--priority",
        "high",
        "--workspace",
        str(workspace),
        "--metadata",
        '{"ticket": 42}',
        cwd=workdir,
    )
    assert created == http.get(f"{API}/sessions/{created['id']}").json()
    assert (created["title"], created["status"], created["priority"]) == (
        f"Refactor {tag}",
        "PENDING",
        "HIGH",
    )
    assert (created["workspace"], created["metadata"]) == (
        str(workspace.resolve()),
        {"ticket": 42},
    )

    shown = cli_json(url, "show", created["id"], cwd=workdir)
    assert shown["session"] == created
    assert [(t["seq"], t["from_state"], t["to_state"]) for t in shown["transitions"]] == [
        (1, None, "PENDING")
    ]

    listed = cli_json(url, "list", "--query", tag, cwd=workdir)
    assert listed == {"items": [created], "total": 1, "offset": 0, "limit": 20}


def test_human_output_shows_the_id_the_state_and_the_history(url: str, workdir: Path):
    tag = uuid.uuid4().hex
    result = session_cli(url, "create", f"Human {tag}", "-p", "Do it", cwd=workdir)
    assert result.returncode == 0, result.stderr
    session_id = next(w for w in result.stdout.split() if len(w) == 36 and w.count("-") == 4)
    assert "⏳ PENDING" in result.stdout
    assert session_cli(url, "start", session_id, "-r", "go", cwd=workdir).returncode == 0

    shown = session_cli(url, "show", session_id, cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    for expected in (session_id, f"Human {tag}", "⚙️ RUNNING", "History", "⏳ PENDING", "go"):
        assert expected in shown.stdout

    listed = session_cli(url, "list", "-q", tag, cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if session_id in line)
    assert f"Human {tag}" in row
    assert "⚙️ RUNNING" in row
    assert "MEDIUM" in row
    assert "1-1 of 1" in listed.stdout


def test_the_lifecycle_verbs_move_the_session(url: str, http: httpx.Client, workdir: Path):
    session_id = create(http, "verbs")["id"]

    def verb(action: str, *args: str) -> str:
        moved = cli_json(url, action, session_id, *args, cwd=workdir)
        assert moved["id"] == session_id
        return str(moved["status"])

    assert verb("start") == "RUNNING"
    assert verb("pause", "--reason", "lunch") == "PAUSED"
    assert verb("resume") == "RUNNING"
    assert verb("stop", "--reason", "enough") == "STOPPED"

    history = http.get(f"{API}/sessions/{session_id}/transitions").json()
    assert [(t["to_state"], t["reason"]) for t in history][1:] == [
        ("RUNNING", None),
        ("PAUSED", "lunch"),
        ("RUNNING", None),
        ("STOPPED", "enough"),
    ]

    retried = cli_json(url, "retry", session_id, cwd=workdir)
    assert (retried["retry_of"], retried["attempt"], retried["status"]) == (
        session_id,
        2,
        "PENDING",
    )
    cancelled = cli_json(url, "cancel", retried["id"], cwd=workdir)
    assert cancelled["status"] == "CANCELLED"


def test_start_on_an_ended_session_says_it_started_a_retry(
    url: str, http: httpx.Client, workdir: Path
):
    session_id = create(http, "ended")["id"]
    http.post(f"{API}/sessions/{session_id}/start").raise_for_status()
    http.post(f"{API}/sessions/{session_id}/fail", json={"reason": "boom"}).raise_for_status()

    result = session_cli(url, "start", session_id, cwd=workdir)

    assert result.returncode == 0, result.stderr
    retry = http.get(f"{API}/sessions", params={"q": "ended", "page_size": 100}).json()["items"]
    new = next(s for s in retry if s["retry_of"] == session_id)
    assert new["status"] == "RUNNING"
    assert "retry" in flat(result.stdout)
    assert new["id"] in result.stdout


def test_list_filters_by_state_and_pages_by_offset(url: str, http: httpx.Client, workdir: Path):
    tag = uuid.uuid4().hex
    ids = [create(http, f"{tag} {n}")["id"] for n in range(5)]
    http.post(f"{API}/sessions/{ids[1]}/start").raise_for_status()
    http.post(f"{API}/sessions/{ids[3]}/cancel").raise_for_status()
    newest_first = ids[::-1]

    def listed(*args: str) -> list[str]:
        page = cli_json(url, "list", "-q", tag, *args, cwd=workdir)
        assert page["total"] == (2 if "--status" in args else 5)
        return [item["id"] for item in page["items"]]

    assert listed() == newest_first
    assert listed("--status", "RUNNING", "-s", "cancelled") == [ids[3], ids[1]]
    assert listed("--limit", "2") == newest_first[:2]
    assert listed("--limit", "2", "--offset", "2") == newest_first[2:4]
    assert listed("--limit", "3", "--offset", "1") == newest_first[1:4]  # across two pages
    assert listed("--limit", "3", "--offset", "4") == newest_first[4:]


def test_a_refused_action_prints_the_server_message_and_exits_1(
    url: str, http: httpx.Client, workdir: Path
):
    session_id = create(http, "pending")["id"]
    refusal = http.post(f"{API}/sessions/{session_id}/pause")
    assert refusal.status_code == 409

    result = session_cli(url, "pause", session_id, cwd=workdir)

    assert result.returncode == 1
    assert result.stdout == ""
    assert flat(result.stderr) == flat(f"error: {refusal.json()['message']}")

    unknown = session_cli(url, "show", str(uuid.uuid4()), "--json", cwd=workdir)
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert "error:" in unknown.stderr
    assert "not" in unknown.stderr.lower()
    assert "Traceback" not in result.stderr + unknown.stderr


@pytest.mark.parametrize("command", [("list",), ("start", "00000000-0000-0000-0000-000000000000")])
def test_an_unreachable_server_is_reported_with_how_to_start_one(
    workdir: Path, command: tuple[str, ...]
):
    nowhere = f"http://127.0.0.1:{free_port()}"

    result = session_cli(nowhere, *command, cwd=workdir)

    message = flat(result.stderr)
    assert result.returncode == 1
    assert message.startswith(f"error: the orchestrator server at {nowhere} is unreachable")
    assert "orchestrator serve" in message
    assert "Traceback" not in result.stderr


def test_the_url_comes_from_orchestrator_url_and_must_be_http(
    server_url_env: dict[str, str], workdir: Path
):
    listed = run_cli("session", "list", "--json", env=server_url_env, cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    assert {"items", "total", "offset", "limit"} <= json.loads(listed.stdout).keys()

    bad = run_cli("session", "list", "--url", "ftp://example", env=server_url_env, cwd=workdir)
    assert bad.returncode == 1
    assert "--url must look like http://HOST:PORT" in flat(bad.stderr)


@pytest.fixture
def server_url_env(url: str) -> dict[str, str]:
    return orchestrator_env(ORCHESTRATOR_URL=url)
