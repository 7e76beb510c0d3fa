"""The services a dispatcher's job reads, faked for tests of the dispatcher alone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from industrial_orchestrator.executors.base import Executor
from industrial_orchestrator.runtime.dispatcher import Dispatcher


class Contexts:
    async def effective(self, **_owners: Any) -> tuple[Any, list[Any]]:
        return SimpleNamespace(data={"shared": "yes"}), []


class Sessions:
    async def get(self, _session_id: Any) -> Any:
        return SimpleNamespace(initial_prompt="the goal", options=SimpleNamespace(max_tokens=7))


def dispatcher(leases: Any, executor: Executor) -> Dispatcher:
    """A dispatcher with no agent service: only its jobs run, not its loop."""
    return Dispatcher(
        SimpleNamespace(),  # type: ignore[arg-type]
        leases,
        {executor.name: executor},
        sessions=Sessions(),  # type: ignore[arg-type]
        contexts=Contexts(),  # type: ignore[arg-type]
    )


def assignment(task: Any, attempt: int) -> Any:
    return SimpleNamespace(
        task=task,
        attempt=SimpleNamespace(attempt=attempt),
        workspace=Path("/tmp/tree"),
        finished_dependencies=[],
    )
