"""The loop guard on the real engine: ``opencode serve`` and our scripted model, two
internal agents whose models differ. The first agent's model loops (``@loop
model=looper``); the guard stops it, its files are rolled back, and the other agent
finishes the task."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import Settings
from industrial_orchestrator.testing.scripted_model import MODEL_ID, ScriptedModel, opencode_config

from .conftest import OpenCodeServer, running_opencode
from .test_opencode_engine import ended, events, start_session, tasks_of, terminal, write

API = "/api/v1"
LOOPING_MODEL = "looper"
# Named so that the dispatcher, which goes through the agents by name, offers the task to
# the looping one first.
FLEET = [
    {
        "name": "a-looper",
        "agent_type": "implementer",
        "capabilities": ["code_generation"],
        "model": f"scripted/{LOOPING_MODEL}",
        "max_concurrent_tasks": 1,
    },
    {
        "name": "b-finisher",
        "agent_type": "implementer",
        "capabilities": ["code_generation"],
        "model": f"scripted/{MODEL_ID}",
        "max_concurrent_tasks": 1,
    },
]

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]


@pytest.fixture(scope="module")
def two_model_opencode(
    opencode_bin: Path, scripted_model: ScriptedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenCodeServer]:
    config = opencode_config(
        scripted_model.base_url,
        permission={"bash": "allow"},
        models=(MODEL_ID, LOOPING_MODEL),
    )
    with running_opencode(opencode_bin, tmp_path_factory.mktemp("opencode"), config) as server:
        yield server


@pytest.fixture
async def api(
    settings_for: Settings, two_model_opencode: OpenCodeServer
) -> AsyncIterator[httpx.AsyncClient]:
    host, _, port = two_model_opencode.base_url.removeprefix("http://").partition(":")
    settings = settings_for.model_copy(
        update={
            "engine_enabled": True,
            "internal_agents": True,
            "engine_tick_seconds": 0.2,
            "opencode_host": host,
            "opencode_port": int(port),
            "opencode_password": SecretStr(two_model_opencode.password),
            "opencode_model": f"scripted/{MODEL_ID}",
            "opencode_agents": json.dumps(FLEET),
            "opencode_poll_seconds": 0.5,
            "reaper_seconds": 0.5,
            "task_max_attempts": 3,
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def agent_names(api: httpx.AsyncClient) -> dict[str, str]:
    return {a["id"]: a["name"] for a in (await api.get(f"{API}/agents")).json()["items"]}


@pytest.mark.settings(guard_repeated_tool_calls=3)
async def test_a_looping_agent_is_stopped_rolled_back_and_its_task_finished_by_another(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    loop = "echo looped >> README.md; echo x >> scratch.txt"
    prompt = "Greet.\n" + write("hello.txt", "hello\n") + f"@loop model={LOOPING_MODEL} {loop}\n"
    session_id = await start_session(api, prompt, workspace=str(git_repo))

    done = await ended(api, session_id)

    assert done["status"] == "COMPLETED", done["status_reason"]
    names = await agent_names(api)
    [task] = await tasks_of(api, session_id)
    history = (await api.get(f"{API}/tasks/{task['id']}/attempts")).json()
    assert [(names[h["agent_id"]], h["outcome"]) for h in history] == [
        ("a-looper", "failed"),
        ("b-finisher", "completed"),
    ]
    called = json.dumps({"command": loop}, separators=(",", ":"))
    assert history[0]["error"] == (
        f"stopped by the loop guard: the agent called bash {called} 3 times in a row"
    )

    # The looper's files were put back before the finisher started: the session's tree
    # has the finisher's work and nothing of the loop's.
    tree = Path(done["worktree"])
    assert (tree / "hello.txt").read_text() == "hello\n"
    assert (tree / "README.md").read_text() == "hello\n"
    assert not (tree / "scratch.txt").exists()

    [stopped] = [e for e in await events(api, session_id) if e["type"] == "task.loop_stopped"]
    assert stopped["payload"]["kind"] == "repeated_tool_call"
    assert names[stopped["payload"]["agent_id"]] == "a-looper"
    assert stopped["payload"]["requeued"] is True
    assert stopped["payload"]["rollback_error"] is None
    assert {"README.md", "scratch.txt", "hello.txt"} <= set(stopped["payload"]["rolled_back"])

    lines = [text for stream, text in await terminal(api, session_id) if stream == "system"]
    [line] = [text for text in lines if text.startswith("stopped by the loop guard: ")]
    assert "rolled back" in line
    assert "scratch.txt" in line

    metrics = (await api.get("/metrics")).text
    assert 'orchestrator_loop_guard_stops_total{kind="repeated_tool_call"} 1.0' in metrics


@pytest.mark.settings(guard_repeated_tool_calls=0, guard_stall_steps=2)
async def test_an_agent_that_changes_nothing_step_after_step_is_stopped_as_stalled(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    prompt = "Look around.\n" + write("hello.txt", "hello\n") + f"@loop model={LOOPING_MODEL} ls\n"
    session_id = await start_session(api, prompt, workspace=str(git_repo))

    done = await ended(api, session_id)

    assert done["status"] == "COMPLETED", done["status_reason"]
    [stopped] = [e for e in await events(api, session_id) if e["type"] == "task.loop_stopped"]
    assert stopped["payload"]["kind"] == "no_progress"
    assert stopped["payload"]["message"] == (
        "the agent ended 2 steps in a row without changing the files into anything new"
    )
    # Its one change (hello.txt, before the stall) was rolled back; the finisher wrote it again.
    assert stopped["payload"]["rolled_back"] == ["hello.txt"]
    assert (Path(done["worktree"]) / "hello.txt").read_text() == "hello\n"
    metrics = (await api.get("/metrics")).text
    assert 'orchestrator_loop_guard_stops_total{kind="no_progress"} 1.0' in metrics
