"""How the orchestrator finds OpenCode: a server of its own (started, supervised,
restarted), a server it is pointed at (with the right password, or a clear refusal), or
none (its agents offline, saying how to configure it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import Settings
from industrial_orchestrator.executors.opencode.client import (
    OpenCodeAuthRefused,
    OpenCodeClient,
    OpenCodeUnreachable,
)
from industrial_orchestrator.executors.opencode.server import ManagedServer
from industrial_orchestrator.testing.scripted_model import ScriptedModel, opencode_config

from ..server_process import ServerProcess
from .conftest import OpenCodeServer, opencode_env

API = "/api/v1"
T = TypeVar("T")

pytestmark = pytest.mark.slow
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


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


def engine_settings(base: Settings, **changes: Any) -> Settings:
    return base.model_copy(
        update={
            "engine_enabled": True,
            "internal_agents": True,
            "engine_tick_seconds": 0.2,
            "opencode_model": "scripted/coder",
            "opencode_poll_seconds": 0.5,
            **changes,
        }
    )


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


@pytest.fixture
def settings(
    settings_for: Settings,
    opencode_bin: Path,
    scripted_model: ScriptedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    # The managed server inherits our environment: give it a home of its own.
    isolated = opencode_env(tmp_path / "opencode-home", "unused", {})
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, isolated[name])
    monkeypatch.setenv("OPENCODE_DISABLE_MODELS_FETCH", "1")
    return engine_settings(
        settings_for,
        opencode_bin=opencode_bin,
        opencode_config=json.dumps(opencode_config(scripted_model.base_url)),
    )


@sqlite_only
async def test_a_managed_server_has_its_own_password_and_is_started_again_when_killed(
    running: tuple[Any, httpx.AsyncClient], git_repo: Path
) -> None:
    app, api = running
    server = app.state.opencode.server
    assert isinstance(server, ManagedServer)
    assert server.available, server.reason
    assert server.client is not None
    base_url = server.client.base_url
    assert base_url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient() as stranger:
        refused = await stranger.get(f"{base_url}/global/health")
    assert refused.status_code == 401, "the generated password guards it"

    first_pid = server.pid
    os.killpg(first_pid, signal.SIGKILL)

    async def restarted() -> bool:
        return server.restarts >= 1 and server.available and server.pid != first_pid

    await eventually(restarted, "the managed server is started again")
    assert (await server.client.health())["healthy"] is True

    prompt = "After the restart.\n@write after.txt\n```\nstill here\n```\n"
    created = await api.post(
        f"{API}/sessions",
        json={
            "title": "After restart",
            "initial_prompt": prompt,
            "template": "single",
            "workspace": str(git_repo),
            "auto_start": True,
        },
    )
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]

    async def done() -> dict[str, Any] | None:
        found = (await api.get(f"{API}/sessions/{session_id}")).json()
        return found if found["terminal"] else None

    finished = await eventually(done, "the session ends", within=90)
    assert finished["status"] == "COMPLETED", finished["status_reason"]
    assert (Path(finished["worktree"]) / "after.txt").read_text() == "still here\n"


async def test_the_client_says_when_nobody_answers_and_when_the_password_is_wrong(
    opencode_server: OpenCodeServer,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    async with OpenCodeClient(f"http://127.0.0.1:{free}", "x", attempts=2) as nobody:
        with pytest.raises(OpenCodeUnreachable, match="No OpenCode server answers at"):
            await nobody.health()
    async with OpenCodeClient(opencode_server.base_url, "wrong") as wrong:
        with pytest.raises(OpenCodeAuthRefused, match="set OPENCODE_PASSWORD"):
            await wrong.health()
    async with OpenCodeClient(opencode_server.base_url, opencode_server.password) as right:
        assert (await right.health())["healthy"] is True


@sqlite_only
async def test_without_opencode_the_fleet_is_offline_and_sessions_say_how_to_configure_it(
    settings_for: Settings, tmp_path: Path
) -> None:
    settings = engine_settings(settings_for, opencode_bin=tmp_path / "no-such-opencode")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            agents = (await api.get(f"{API}/agents")).json()["items"]
            assert {a["name"] for a in agents} == {
                "architect",
                "implementer",
                "reviewer",
                "security-auditor",
                "tester",
            }
            for agent in agents:
                assert agent["kind"] == "internal"
                assert agent["status"] == "offline"
                assert "is not an executable file" in agent["metadata"]["offline_reason"]
                assert "OPENCODE_HOST" in agent["metadata"]["offline_reason"]
            created = await api.post(
                f"{API}/sessions",
                json={
                    "title": "Nobody to do it",
                    "initial_prompt": "Write the code",
                    "template": "single",
                    "auto_start": True,
                },
            )
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]

            async def degraded() -> dict[str, Any] | None:
                found = (await api.get(f"{API}/sessions/{session_id}")).json()
                return found if found["status"] == "DEGRADED" else None

            waiting = await eventually(degraded, "the session shows why it waits", within=30)
            assert "implementer is offline" in waiting["status_reason"]
            assert "OPENCODE_HOST" in waiting["status_reason"]


def children_named(parent: int, name: str) -> list[int]:
    """Processes whose parent is ``parent`` and whose command name is ``name``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            command = fields[0].split("(", 1)[1]
            ppid = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and command == name:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_sigkilled_orchestrator_leaves_no_managed_server_behind(
    opencode_bin: Path, scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    isolated = opencode_env(tmp_path / "opencode-home", "unused", {})
    env = {
        name: isolated[name]
        for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")
    }
    env |= {
        "ENGINE_ENABLED": "true",
        "INTERNAL_AGENTS": "true",
        "OPENCODE_BIN": str(opencode_bin),
        "OPENCODE_CONFIG": json.dumps(opencode_config(scripted_model.base_url)),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
    }
    with ServerProcess(env, tmp_path / "server") as server:
        run = server.start(timeout=90)
        with server.client() as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                agents = http.get(f"{API}/agents").json()["items"]
                if agents and all(a["status"] == "healthy" for a in agents):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"the fleet never came up: {agents}")
        [child] = children_named(run.process.pid, "opencode")
        assert alive(child)
        server.kill()
        deadline = time.monotonic() + 15
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), "the managed opencode outlived the orchestrator"
