"""A whole session watched in Chromium: started from the page, planned and worked by the
real engine and a real ``orchestrator worker``, every part of the detail page following
it live to COMPLETED with its diff."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.cli.test_worker import WorkerProcess
from tests.server_process import ServerProcess

from .conftest import API, dashboard_server, screenshot

# Each task leaves a line in the tree and reports what it spent.
COMMAND = (
    'echo "agent at work on $ORCHESTRATOR_TASK_TITLE"; '
    'echo "$ORCHESTRATOR_TASK_TITLE" >> notes.txt; '
    'echo \'{"tokens_used": 120, "cost_usd": 0.01}\' > "$ORCHESTRATOR_USAGE_FILE"'
)


@pytest.fixture
def engine_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with dashboard_server(tmp_path) as running:
        running.env.update(
            ENGINE_ENABLED="true", ENGINE_TICK_SECONDS="0.2", AGENT_HEARTBEAT_SECONDS="1"
        )
        running.start()
        yield running


def _repository(path: Path) -> Path:
    path.mkdir()
    (path / "README.md").write_text("# calc\n")
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "."],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        subprocess.run(command, cwd=path, check=True)
    return path


def test_a_session_started_from_the_page_runs_to_completed_before_the_operators_eyes(
    engine_server: ServerProcess, page: Page, tmp_path: Path
) -> None:
    workspace = _repository(tmp_path / "repo")
    with engine_server.client() as api:
        created = api.post(
            f"{API}/sessions",
            json={
                "title": "Todo service",
                "initial_prompt": "Build a CRUD REST API for todo items with a database",
                "template": "crud",
                "workspace": str(workspace),
                "verify_command": "test -s notes.txt",
            },
        ).json()
    session_id = created["id"]
    worker = WorkerProcess(
        engine_server.base_url,
        tmp_path / "worker-home",
        tmp_path / "workers",
        "--any-capability",
        "--command",
        COMMAND,
    )
    try:
        page.goto(f"{engine_server.base_url}/sessions/{session_id}")
        expect(page.locator("#link-state")).to_have_attribute("data-state", "up")
        page.evaluate("window.__notReloaded = true")
        page.locator('button[data-verb="start"]').click()

        head = page.locator(".session-head")
        expect(head).to_have_attribute("data-status", "COMPLETED", timeout=60_000)
    finally:
        worker.kill()
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"

    with httpx.Client(base_url=engine_server.base_url + API, timeout=10.0) as api:
        session = api.get(f"/sessions/{session_id}").json()
        tasks = api.get("/tasks", params={"session_id": session_id, "page_size": 100}).json()
        checkpoints = api.get(f"/sessions/{session_id}/checkpoints").json()["items"]
        events = api.get(f"/sessions/{session_id}/events", params={"limit": 1000}).json()
    work = [task for task in tasks["items"] if task["parent_id"] is not None]
    assert work, tasks

    terminal = page.locator("#terminal")
    # Every event of the session is one line of the terminal, in order, none twice.
    expect(terminal.locator(".line")).to_have_count(len(events["items"]))
    seqs = terminal.locator(".line").evaluate_all("lines => lines.map(l => Number(l.dataset.seq))")
    assert seqs == [event["seq"] for event in events["items"]]
    expect(terminal).to_contain_text("agent at work on")
    expect(terminal).to_contain_text("verification passed")
    texts = terminal.locator(".line-text").all_inner_texts()
    assert texts.count("verification passed\n") == 1, "the verification ran twice"
    expect(terminal).to_contain_text("RUNNING → COMPLETED")

    telemetry = page.locator('[data-region="telemetry"]')
    expect(telemetry.locator('[data-meter="tokens"] .meter-value')).to_have_text(
        f"{session['tokens_used']:,}"
    )
    assert session["tokens_used"] == 120 * len(work)
    expect(telemetry.locator('[data-meter="success"] .meter-value')).to_have_text("100%")
    expect(telemetry).to_contain_text(f"{len(work)} of {len(work)} finished tasks")

    rows = page.locator("#session-tasks tbody tr")
    expect(rows).to_have_count(len(work))
    expect(page.locator("#session-tasks .tstatus-COMPLETED")).to_have_count(len(work))

    # The timeline: newest first, each with why it was taken.
    timeline = page.locator("#checkpoints li")
    expect(timeline).to_have_count(len(checkpoints))
    shown = timeline.locator(".tl-seq").all_inner_texts()
    assert shown == [f"#{cp['seq']}" for cp in checkpoints]
    assert shown == sorted(shown, key=lambda seq: -int(seq[1:]))
    assert timeline.first.locator(".tl-label").inner_text() == checkpoints[0]["label"]

    # The final diff is on the page once the session has ended.
    expect(page.locator("#diff-files")).to_contain_text("notes.txt")
    expect(page.locator("#diff-text")).to_contain_text("+" + work[0]["title"])
    # A finished session offers no verb but (for a failure) a retry.
    assert page.locator(".controls button:enabled").count() == 0
    screenshot(page, "session-completed")
