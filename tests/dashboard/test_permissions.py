"""A permission request answered from the session page: the real ``opencode serve`` (with
our scripted model) asks before running a command, the operator approves it in Chromium,
and the session goes on to COMPLETED."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from industrial_orchestrator.testing.scripted_model import ScriptedModel, opencode_config
from tests.integration.conftest import (  # fixtures, used by name
    OpenCodeServer,
    git_repo,
    opencode_bin,
    running_opencode,
)

from .conftest import API, dashboard_server, screenshot

pytestmark = pytest.mark.slow

__all__ = ["git_repo", "opencode_bin"]


@pytest.fixture(scope="module")
def asking_opencode(
    opencode_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenCodeServer]:
    """OpenCode that asks the operator before running any shell command."""
    with ScriptedModel().in_thread() as model:
        config = opencode_config(model.base_url, permission={"bash": "ask"})
        root = tmp_path_factory.mktemp("opencode")
        with running_opencode(opencode_bin, root, config) as server:
            yield server


def test_the_operator_approves_a_command_from_the_session_page(
    page: Page, asking_opencode: OpenCodeServer, git_repo: Path, tmp_path: Path
) -> None:
    host, _, port = asking_opencode.base_url.removeprefix("http://").partition(":")
    with dashboard_server(tmp_path) as server:
        server.env.update(
            ENGINE_ENABLED="true",
            ENGINE_TICK_SECONDS="0.2",
            INTERNAL_AGENTS="true",
            OPENCODE_HOST=host,
            OPENCODE_PORT=port,
            OPENCODE_PASSWORD=asking_opencode.password,
            OPENCODE_MODEL="scripted/coder",
            OPENCODE_POLL_SECONDS="0.5",
        )
        server.start()
        with server.client() as api:
            created = api.post(
                f"{API}/sessions",
                json={
                    "title": "Needs a shell",
                    "initial_prompt": "Prove it.\n@bash echo approved > proof.txt\n",
                    "template": "single",
                    "workspace": str(git_repo),
                    "auto_start": True,
                },
            )
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]

        page.goto(f"{server.base_url}/sessions/{session_id}")
        request = page.locator("#permissions li")
        expect(request).to_have_count(1, timeout=60_000)
        expect(request).to_contain_text("bash")
        expect(request).to_contain_text("echo approved > proof.txt")
        with server.client() as api:
            tree = Path(api.get(f"{API}/sessions/{session_id}").json()["worktree"])
        assert not (tree / "proof.txt").exists(), "nothing runs before the operator says so"
        screenshot(page, "permission")

        request.get_by_role("button", name="APPROVE").click()
        expect(page.locator(".session-head")).to_have_attribute(
            "data-status", "COMPLETED", timeout=60_000
        )
        assert (tree / "proof.txt").read_text() == "approved\n"
        expect(page.locator("#terminal")).to_contain_text("answered permission request")
        expect(page.locator("#permissions li")).to_have_count(0)
        expect(page.locator("#diff-files")).to_contain_text("proof.txt")
        page.close()  # before the server stops: a request cut off would be a console error
