"""Artifact-path fuzzing through the real server: an agent reports results whose artifact
paths hypothesis builds from the pieces of every known escape (parent steps, absolute
and drive paths, backslashes, NUL, look-alike dots, a symlink in the workspace that
points outside). Whatever the answer, nothing may appear outside the session's
workspace, nothing inside it may be written through the symlink, and no answer may be a
server error; an accepted artifact is exactly where its path says."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st

from tests.api.helpers import API
from tests.server_process import ServerProcess

EXTERNAL = f"{API}/agents/external"

PIECES = [
    "..",
    ".",
    "",
    "escape",
    "src",
    "a.py",
    "~",
    "%2e%2e",
    "..\\..",
    "C:",
    "c:\\x",
    "\x00",
    "\u2024\u2024",  # ONE DOT LEADER, twice: looks like ".."
    "\uff0e\uff0e",  # FULLWIDTH FULL STOP, twice
    "...",
    " ",
    "con",
    "a" * 300,
]
hostile_paths = st.one_of(
    st.builds(
        lambda lead, parts: lead + "/".join(parts),
        st.sampled_from(["", "/", "//", "./", "\\"]),
        st.lists(st.sampled_from(PIECES), min_size=1, max_size=5),
    ),
    st.text(max_size=40),
)


@dataclass
class Arena:
    """A session's workspace, and beside it the directory a symlink in it points to."""

    root: Path
    workspace: Path
    outside: Path
    figures: dict[str, int] = field(
        default_factory=lambda: {"paths": 0, "refused": 0, "written": 0}
    )

    def files_outside(self) -> list[Path]:
        found = []
        for directory, _, files in os.walk(self.root):
            if Path(directory).is_relative_to(self.workspace):
                continue
            found.extend(Path(directory) / name for name in files)
        return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Arena]]:
    base = tmp_path_factory.mktemp("artifact-paths")
    root = base / "arena"
    workspace, outside = root / "workspace", root / "outside"
    workspace.mkdir(parents=True)
    outside.mkdir()
    (workspace / "escape").symlink_to(outside)
    env = {"ORCHESTRATOR_HOME": str(base / "home"), "LOG_LEVEL": "WARNING"}
    with ServerProcess(env, base / "server") as server:
        server.start()
        yield server, Arena(root, workspace, outside)


def _ok(response: httpx.Response, expected: int) -> Any:
    assert response.status_code == expected, response.text
    return response.json()


def test_no_artifact_path_writes_outside_the_workspace(
    served: tuple[ServerProcess, Arena],
) -> None:
    server, arena = served
    with server.client() as http:
        session = _ok(
            http.post(
                f"{API}/sessions",
                json={
                    "title": "fuzz",
                    "initial_prompt": "p",
                    "workspace": str(arena.workspace),
                    "auto_start": True,
                },
            ),
            201,
        )
        registered = _ok(
            http.post(
                f"{EXTERNAL}/register",
                json={
                    "protocol_version": "1.0",
                    "name": "fuzzer",
                    "version": "1",
                    "agent_type": "implementer",
                    "capabilities": ["python"],
                    "max_concurrent_tasks": 1,
                },
            ),
            201,
        )
        agent_id = registered["agent_id"]
        agent = {"Authorization": f"Bearer {registered['auth_token']}", "X-Agent-ID": agent_id}

        def leased_task() -> str:
            task = _ok(
                http.post(
                    f"{API}/tasks",
                    json={
                        "title": "t",
                        "task_type": "code_generation",
                        "required_capabilities": ["python"],
                        "session_id": session["id"],
                    },
                ),
                201,
            )
            _ok(http.patch(f"{API}/tasks/{task['id']}", json={"status": "READY"}), 200)
            leased = _ok(http.post(f"{EXTERNAL}/{agent_id}/tasks/next", headers=agent), 200)
            assert leased["task_id"] == task["id"]
            return str(task["id"])

        task_id = leased_task()

        @hypothesis.settings(
            max_examples=300,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(path=hostile_paths)
        def report(path: str) -> None:
            nonlocal task_id
            content = f"artifact {arena.figures['paths']}"
            answer = http.post(
                f"{EXTERNAL}/{agent_id}/tasks/{task_id}/result",
                json={
                    "task_id": task_id,
                    "status": "completed",
                    "artifacts": [{"path": path, "content": content}],
                },
                headers=agent,
            )
            arena.figures["paths"] += 1
            assert answer.status_code < 500, answer.text
            assert arena.files_outside() == [], f"{path!r} wrote outside the workspace"
            if answer.status_code == 200:
                arena.figures["written"] += 1
                target = arena.workspace / path
                assert target.resolve().is_relative_to(arena.workspace.resolve()), path
                assert not target.is_symlink(), path
                assert target.read_text() == content, path
                task_id = leased_task()
            else:
                assert answer.status_code in (413, 422), answer.text
                arena.figures["refused"] += 1

        report()
    figures = arena.figures
    print(
        f"\n[artifact-path fuzzing] {figures['paths']} hostile paths reported by an agent: "
        f"{figures['refused']} refused (4xx), {figures['written']} written inside the "
        "workspace, 0 files outside it, 0 server errors"
    )
