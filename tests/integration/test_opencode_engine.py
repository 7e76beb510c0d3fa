"""Sessions run by the engine through the real ``opencode serve`` and our scripted model.

One OpenCode server (and one scripted model process) serves the whole module, reached
as an external server (``OPENCODE_HOST``), like a shared deployment; the managed mode
(``OPENCODE_BIN``) has its own test. Each test runs the real app (engine, dispatcher,
internal fleet) in-process and watches it through the API only.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import Settings
from industrial_orchestrator.testing.scripted_model import LISTENING, opencode_config

from .conftest import OpenCodeServer, running_opencode

API = "/api/v1"
T = TypeVar("T")
# The scripted model's prices (per million tokens), as configured by opencode_config.
INPUT_PRICE, OUTPUT_PRICE = 1.0, 2.0

pytestmark = pytest.mark.slow
# The storage paths are the same for every executor, and run on both backends in
# tests/api; here SQLite suffices.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@dataclass(frozen=True)
class Model:
    """The scripted model, served by a process of its own for the module."""

    base_url: str

    def calls(self) -> list[dict[str, Any]]:
        root = self.base_url.removesuffix("/v1")
        return list(httpx.get(f"{root}/_scripted/calls", timeout=10).json())

    def forget(self) -> None:
        httpx.delete(f"{self.base_url.removesuffix('/v1')}/_scripted/calls", timeout=10)

    def chat_usage(self) -> list[dict[str, int]]:
        return [c["usage"] for c in self.calls() if c["kind"] == "chat" and c["usage"]]


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    process = subprocess.Popen(
        [sys.executable, "-m", "industrial_orchestrator.testing.scripted_model", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(LISTENING), f"the scripted model did not start: {line!r}"
        yield Model(line.removeprefix(LISTENING).strip())
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def shared_opencode(
    opencode_bin: Path, model: Model, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenCodeServer]:
    # bash asks for permission, so the permission test has a request to answer.
    config = opencode_config(model.base_url, permission={"bash": "ask"})
    with running_opencode(opencode_bin, tmp_path_factory.mktemp("opencode"), config) as server:
        yield server


@pytest.fixture
def settings(settings_for: Settings, shared_opencode: OpenCodeServer, model: Model) -> Settings:
    model.forget()
    host, _, port = shared_opencode.base_url.removeprefix("http://").partition(":")
    return settings_for.model_copy(
        update={
            "engine_enabled": True,
            "internal_agents": True,
            "engine_tick_seconds": 0.2,
            "opencode_host": host,
            "opencode_port": int(port),
            "opencode_password": SecretStr(shared_opencode.password),
            "opencode_model": "scripted/coder",
            "opencode_poll_seconds": 0.5,
            "reaper_seconds": 0.5,
        }
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, within: float = 60.0
) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within:.0f} s: {what}")


async def start_session(api: httpx.AsyncClient, prompt: str, **fields: Any) -> str:
    body = {"title": "Integration", "initial_prompt": prompt, "template": "single", **fields}
    response = await api.post(f"{API}/sessions", json={**body, "auto_start": True})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def session(api: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await api.get(f"{API}/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def ended(api: httpx.AsyncClient, session_id: str, within: float = 90.0) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = await session(api, session_id)
        return found if found["terminal"] else None

    return await eventually(probe, f"session {session_id} ends", within)


async def events(api: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"{API}/sessions/{session_id}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def terminal(api: httpx.AsyncClient, session_id: str) -> list[tuple[str, str]]:
    return [
        (e["payload"]["stream"], e["payload"]["text"])
        for e in await events(api, session_id)
        if e["type"] == "session.log"
    ]


async def tasks_of(api: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"{API}/tasks", params={"session_id": session_id, "page_size": 100})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def write(path: str, content: str) -> str:
    return f"@write {path}\n```\n{content}```\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@sqlite_only
async def test_a_session_codes_through_opencode_and_ends_completed_with_its_diff_and_usage(
    api: httpx.AsyncClient, git_repo: Path, model: Model
) -> None:
    prompt = (
        "Add a greeting.\n"
        + write("hello.py", "print('hello')\n")
        + "@edit hello.py\n```old\nhello\n```\n```new\nworld\n```\n"
    )
    session_id = await start_session(api, prompt, workspace=str(git_repo))
    done = await ended(api, session_id)
    assert done["status"] == "COMPLETED", done["status_reason"]

    tree = Path(done["worktree"])
    assert (tree / "hello.py").read_text() == "print('world')\n"
    assert done["branch"] == f"orchestrator/{session_id.replace('-', '')[:8]}"
    # The operator's checkout is untouched; the branch is there for them to merge.
    assert not (git_repo / "hello.py").exists()
    assert done["branch"] in git(git_repo, "branch", "--list", done["branch"])

    diff = (await api.get(f"{API}/sessions/{session_id}/diff")).json()
    assert diff["files"] == ["hello.py"]
    assert "+print('world')" in diff["diff"]

    # Tokens and cost are what the model reported, priced as configured.
    usage = model.chat_usage()
    assert len(usage) == 3, "a write, an edit, and the final answer"
    assert done["tokens_used"] == sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage)
    cost = sum(
        u["prompt_tokens"] * INPUT_PRICE + u["completion_tokens"] * OUTPUT_PRICE for u in usage
    )
    assert done["cost_usd"] == pytest.approx(cost / 1e6)

    # The terminal shows the tool calls going through their states as the stream carries
    # them, each ending with how it ended (read from the messages where the stream had
    # not carried it yet when the turn was seen idle), then the answer.
    lines = await terminal(api, session_id)
    tools = [
        text.split(" [")[0] + " " + text.split("[")[1].split("]")[0]
        for s, text in lines
        if s == "tool"
    ]
    order = ["pending", "running", "completed"]
    for tool in ("write", "edit"):
        states = [t.split(" ")[1] for t in tools if t.split(" ")[0] == tool]
        assert states[-1:] == ["completed"], tools
        assert states == sorted(set(states), key=order.index), tools
    assert [t for t in tools if t.endswith(" completed")] == ["write completed", "edit completed"]
    assert any(t.endswith(" running") for t in tools), f"nothing shown live: {tools}"
    assert ("agent", "Done: wrote hello.py, edited hello.py.\n") in lines

    # The task's diff is its artifact; the agent that did it has it on its record.
    [task] = await tasks_of(api, session_id)
    artifacts = (await api.get(f"{API}/tasks/{task['id']}/artifacts")).json()
    assert [a["path"] for a in artifacts] == [".orchestrator/task.diff"]
    agents = (await api.get(f"{API}/agents")).json()["items"]
    implementer = next(a for a in agents if a["name"] == "implementer")
    assert implementer["kind"] == "internal"
    assert implementer["success_count"] == 1


def opencode_status(server: OpenCodeServer, tree: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/session/status",
        params={"directory": tree},
        auth=server.auth,
        timeout=10,
    )
    response.raise_for_status()
    return dict(response.json())


@sqlite_only
async def test_two_sessions_on_one_repository_work_side_by_side_without_touching_each_other(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    first = await start_session(
        api, "First.\n@slow 2\n" + write("shared.txt", "first\n"), workspace=str(git_repo)
    )
    second = await start_session(
        api, "Second.\n@slow 2\n" + write("shared.txt", "second\n"), workspace=str(git_repo)
    )
    one, two = await ended(api, first), await ended(api, second)
    assert (one["status"], two["status"]) == ("COMPLETED", "COMPLETED")
    assert one["worktree"] != two["worktree"]
    assert one["branch"] != two["branch"]
    assert (Path(one["worktree"]) / "shared.txt").read_text() == "first\n"
    assert (Path(two["worktree"]) / "shared.txt").read_text() == "second\n"
    # Side by side, not one after the other: each task started before the other ended.
    [a], [b] = await tasks_of(api, first), await tasks_of(api, second)
    assert a["started_at"] < b["finished_at"]
    assert b["started_at"] < a["finished_at"]
    # The operator's checkout saw none of it.
    assert not (git_repo / "shared.txt").exists()
    assert git(git_repo, "status", "--porcelain") == ""


@sqlite_only
async def test_stopping_a_session_aborts_its_opencode_turn(
    api: httpx.AsyncClient, git_repo: Path, shared_opencode: OpenCodeServer
) -> None:
    session_id = await start_session(api, "Take your time.\n@slow 120\n", workspace=str(git_repo))

    async def busy() -> str | None:
        tree = (await session(api, session_id))["worktree"]
        return tree if tree and opencode_status(shared_opencode, tree) else None

    tree = await eventually(busy, "OpenCode works on the task")
    started = time.monotonic()
    response = await api.post(f"{API}/sessions/{session_id}/stop", json={"reason": "enough"})
    assert response.status_code == 200, response.text

    async def idle() -> bool:
        return not opencode_status(shared_opencode, tree)

    await eventually(idle, "OpenCode's turn is aborted", within=10)
    took = time.monotonic() - started
    print(f"\n[opencode stop] the turn was aborted {took:.2f} s after stop")
    assert (await session(api, session_id))["status"] == "STOPPED"
    [task] = await tasks_of(api, session_id)
    assert task["status"] == "CANCELLED"


@sqlite_only
@pytest.mark.settings(task_timeout_seconds=12, task_max_attempts=1)
async def test_a_provider_failing_forever_degrades_the_session_then_fails_it_at_the_deadline(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    session_id = await start_session(api, "Doomed.\n@fail 500\n", workspace=str(git_repo))

    async def degraded() -> dict[str, Any] | None:
        found = await session(api, session_id)
        return found if found["status"] == "DEGRADED" else None

    seen = await degraded_state(degraded)
    assert "provider retrying" in seen["status_reason"]
    done = await ended(api, session_id)
    assert done["status"] == "FAILED", done["status_reason"]
    [task] = await tasks_of(api, session_id)
    assert task["status"] == "FAILED"
    attempts = (await api.get(f"{API}/tasks/{task['id']}/attempts")).json()
    assert "deadline of 12 s passed while the provider was being retried" in attempts[-1]["error"]
    lines = await terminal(api, session_id)
    assert any("OpenCode retrying" in text for stream, text in lines if stream == "system")


async def degraded_state(
    probe: Callable[[], Awaitable[dict[str, Any] | None]],
) -> dict[str, Any]:
    return await eventually(probe, "the session shows DEGRADED", within=30)


@sqlite_only
async def test_a_permission_request_waits_for_the_operator_and_goes_on_once_approved(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    session_id = await start_session(
        api, "Prove it.\n@bash echo approved > proof.txt\n", workspace=str(git_repo)
    )

    async def asked() -> list[dict[str, Any]] | None:
        response = await api.get(f"{API}/sessions/{session_id}/permissions")
        return list(response.json()) if response.status_code == 200 and response.json() else None

    [request] = await eventually(asked, "the agent asks to run its command")
    assert request["permission"] == "bash"
    assert "echo approved > proof.txt" in " ".join(request["patterns"])
    tree = Path((await session(api, session_id))["worktree"])
    assert not (tree / "proof.txt").exists(), "nothing runs before the operator says so"

    unknown = await api.post(
        f"{API}/sessions/{session_id}/permissions",
        json={"request_id": "per_unknown", "reply": "once"},
    )
    assert unknown.status_code == 404, unknown.text
    response = await api.post(
        f"{API}/sessions/{session_id}/permissions",
        json={"request_id": request["id"], "reply": "once"},
    )
    assert response.status_code == 200, response.text
    done = await ended(api, session_id)
    assert done["status"] == "COMPLETED", done["status_reason"]
    assert (tree / "proof.txt").read_text() == "approved\n"
    lines = [text for _, text in await terminal(api, session_id)]
    assert any("permission needed: bash" in line for line in lines)
    assert any(f"answered permission request {request['id']}: once" in line for line in lines)


@sqlite_only
async def test_a_retry_starts_from_the_files_of_the_checkpoint_it_restores(
    api: httpx.AsyncClient, git_repo: Path, model: Model, tmp_path: Path
) -> None:
    marker = tmp_path / "verified-once"
    # The first verification leaves junk behind and hangs (it is stopped); the retry's passes.
    verify = f"test -e {marker} || {{ touch {marker}; echo junk > junk.txt; sleep 60; }}"
    first = await start_session(
        api,
        "Write a.\n" + write("a.txt", "exactly this\n"),
        workspace=str(git_repo),
        verify_command=verify,
    )

    async def verifying() -> bool:
        return marker.exists()

    await eventually(verifying, "the verification runs")
    old_tree = Path((await session(api, first))["worktree"])
    await eventually(
        lambda: asyncio.to_thread((old_tree / "junk.txt").exists), "the junk is written"
    )
    stopped = await api.post(f"{API}/sessions/{first}/stop", json={"reason": "try again"})
    assert stopped.status_code == 200, stopped.text
    calls_before = len(model.chat_usage())

    retried = await api.post(f"{API}/sessions/{first}/retry", json={"start": True})
    assert retried.status_code == 201, retried.text
    second = retried.json()["id"]
    done = await ended(api, second)
    assert done["status"] == "COMPLETED", done["status_reason"]
    tree = Path(done["worktree"])
    assert tree != old_tree
    assert (tree / "a.txt").read_text() == "exactly this\n"
    assert not (tree / "junk.txt").exists(), "the retry starts from the checkpoint's files"
    assert (old_tree / "junk.txt").exists(), "the stopped session's tree is kept as it was"
    assert len(model.chat_usage()) == calls_before, "the finished task is not done again"


def planned(*tasks: dict[str, Any]) -> str:
    """A prompt whose plan the scripted architect proposes (``@plan``)."""
    return "@plan\n~~~json\n" + json.dumps({"tasks": list(tasks)}, indent=1) + "\n~~~\n"


async def phase_reasons(api: httpx.AsyncClient, session_id: str) -> list[str]:
    return [
        e["payload"]["reason"]
        for e in await events(api, session_id)
        if e["type"] == "session.phase"
    ]


@sqlite_only
async def test_the_architect_plans_the_session_and_the_fleet_does_the_plan(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    plan = planned(
        {
            "key": "code",
            "title": "Write the module",
            "task_type": "code_generation",
            "required_capabilities": ["code_generation"],
            "description": "Write it.\n" + write("module.py", "VALUE = 42\n"),
        },
        {
            "key": "tests",
            "title": "Test the module",
            "task_type": "testing",
            "required_capabilities": ["testing"],
            "depends_on": ["code"],
            "description": "Test it.\n" + write("test_module.py", "from module import VALUE\n"),
        },
    )
    session_id = await start_session(
        api, "Build the module with a test.\n" + plan, workspace=str(git_repo), planner="agent"
    )
    done = await ended(api, session_id)
    assert done["status"] == "COMPLETED", done["status_reason"]
    assert "planned 3 task(s) by the architect agent" in await phase_reasons(api, session_id)
    tree = Path(done["worktree"])
    assert (tree / "module.py").read_text() == "VALUE = 42\n"
    assert (tree / "test_module.py").read_text() == "from module import VALUE\n"
    tasks = {t["title"]: t for t in await tasks_of(api, session_id)}
    assert {"Write the module", "Test the module"} <= set(tasks)
    assert tasks["Test the module"]["started_at"] >= tasks["Write the module"]["finished_at"]
    agents = {a["id"]: a["name"] for a in (await api.get(f"{API}/agents")).json()["items"]}
    doers = {}
    for title in ("Write the module", "Test the module"):
        attempts = (await api.get(f"{API}/tasks/{tasks[title]['id']}/attempts")).json()
        doers[title] = agents[attempts[-1]["agent_id"]]
    assert doers == {"Write the module": "implementer", "Test the module": "tester"}
    lines = [text for _, text in await terminal(api, session_id)]
    assert any(line.startswith("[architect]") for line in lines)
    assert done["tokens_used"] > 0


@sqlite_only
async def test_an_unusable_plan_falls_back_to_the_template_saying_why(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    cyclic = planned(
        {
            "key": "a",
            "title": "A",
            "required_capabilities": ["code_generation"],
            "depends_on": ["b"],
        },
        {
            "key": "b",
            "title": "B",
            "required_capabilities": ["code_generation"],
            "depends_on": ["a"],
        },
    )
    session_id = await start_session(
        api, "Go round in circles.\n" + cyclic, workspace=str(git_repo), planner="agent"
    )
    done = await ended(api, session_id)
    assert done["status"] == "COMPLETED", done["status_reason"]
    [reason] = [r for r in await phase_reasons(api, session_id) if r.startswith("planned")]
    assert reason.startswith("planned 1 task(s) from template single")
    assert "the architect's plan is unusable" in reason
    assert "cycle" in reason.lower()


@sqlite_only
@pytest.mark.settings(task_max_attempts=1)
async def test_a_provider_refusing_the_request_fails_the_task_with_its_reason(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    session_id = await start_session(api, "Refused.\n@fail 400\n", workspace=str(git_repo))
    done = await ended(api, session_id)
    assert done["status"] == "FAILED", done["status_reason"]
    [task] = await tasks_of(api, session_id)
    attempts = (await api.get(f"{API}/tasks/{task['id']}/attempts")).json()
    assert attempts[-1]["outcome"] == "failed"
    assert attempts[-1]["error"].startswith("APIError")


async def transitions(api: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"{API}/sessions/{session_id}/transitions")
    assert response.status_code == 200, response.text
    return list(response.json())


async def assert_failed_once_degraded(
    api: httpx.AsyncClient, model: Model, session_id: str, status: int, *, seen: bool
) -> str:
    """The session ended FAILED after a single attempt, DEGRADED once on the way (or,
    unless ``seen``, not at all: an outage shorter than an engine round may pass unseen)
    and never RUNNING again in between; its reason, returned."""
    done = await ended(api, session_id)
    assert done["status"] == "FAILED", done["status_reason"]
    moves = [(t["from_state"], t["to_state"]) for t in await transitions(api, session_id)]
    degraded = [m for m in moves if m[1] == "DEGRADED"]
    assert degraded == [("RUNNING", "DEGRADED")] if seen else len(degraded) <= 1, moves
    assert ("DEGRADED", "RUNNING") not in moves, moves
    [task] = await tasks_of(api, session_id)
    assert task["status"] == "FAILED"
    attempts = (await api.get(f"{API}/tasks/{task['id']}/attempts")).json()
    assert len(attempts) == 1, "the outage is not waited out again by another attempt"
    failed = [c for c in model.calls() if c["kind"] == "chat" and c["status"] == status]
    assert len(failed) >= 2, "OpenCode retried the provider"
    lines = [text for stream, text in await terminal(api, session_id) if stream == "system"]
    assert sum("provider failing, OpenCode retrying" in text for text in lines) == 1, lines
    assert not any("provider answering again" in text for text in lines), lines
    reason = str(done["status_reason"])
    assert f"scripted failure (@fail {status})" in reason
    assert "OPENCODE_MODEL" in reason, "the reason names the setting to fix"
    assert attempts[0]["error"] in reason
    return reason


@sqlite_only
@pytest.mark.settings(provider_retry_budget_seconds=3, task_max_attempts=3)
async def test_a_provider_down_past_the_retry_budget_fails_the_session_naming_error_and_setting(
    api: httpx.AsyncClient, git_repo: Path, model: Model
) -> None:
    # OpenCode waits 2 s, then 4 s between its tries: the 3 s budget runs out in between.
    session_id = await start_session(api, "Doomed.\n@fail 503\n", workspace=str(git_repo))
    reason = await assert_failed_once_degraded(api, model, session_id, 503, seen=True)
    assert "past the provider retry budget of 3 s (PROVIDER_RETRY_BUDGET_SECONDS)" in reason
    assert "check the model scripted/coder" in reason


@sqlite_only
@pytest.mark.settings(task_max_attempts=3)
async def test_a_provider_opencode_stops_retrying_fails_the_session_without_another_attempt(
    api: httpx.AsyncClient, git_repo: Path, model: Model
) -> None:
    # Retried after 0.05 s each time, OpenCode gives up long before the default budget.
    session_id = await start_session(api, "Doomed.\n@fail 500 0.05\n", workspace=str(git_repo))
    reason = await assert_failed_once_degraded(api, model, session_id, 500, seen=False)
    assert "until OpenCode stopped retrying it" in reason
