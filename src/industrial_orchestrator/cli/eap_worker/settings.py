"""What the command line tells a worker (``WorkerConfig``), and the capabilities it
registers: those given, or with ``--any-capability`` every one a task can require that
this worker can know of."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import typer

from ...domain.planning.templates import TEMPLATES
from ...domain.tasks.task import TaskType

MAX_CAPABILITIES = 64  # what registration accepts


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """One worker's settings, from its options: the server, the agent it registers as,
    the command it runs for each task, and where tasks without a workspace run."""

    url: str
    name: str
    command: str
    capabilities: tuple[str, ...]
    any_capability: bool
    agent_type: str
    concurrency: int
    registration_token: str | None
    home: Path


def orchestrator_home() -> Path:
    """``$ORCHESTRATOR_HOME``, else ``.orchestrator`` in the current directory."""
    return Path(os.environ.get("ORCHESTRATOR_HOME") or ".orchestrator").resolve()


def known_capabilities() -> set[str]:
    """Every capability a task can require that this worker can know of: those of the
    planning templates and the task types."""
    from_templates = {c for t in TEMPLATES.values() for step in t.steps for c in step.capabilities}
    return from_templates | {task_type.value for task_type in TaskType}


def capabilities_for(given: Iterable[str], any_capability: bool) -> tuple[str, ...]:
    """The capabilities to register: ``given``, plus every known one with ``any_capability``.

    Raises ``typer.BadParameter`` (exit 2) when there are none, or more than registration
    accepts.
    """
    capabilities = {name.strip().lower() for name in given if name.strip()}
    if any_capability:
        capabilities |= known_capabilities()
    if not capabilities:
        raise typer.BadParameter(
            "give at least one --capability CAP (repeatable), or --any-capability to take "
            "every task",
            param_hint="--capability",
        )
    if len(capabilities) > MAX_CAPABILITIES:
        raise typer.BadParameter(
            f"{len(capabilities)} capabilities; an agent registers at most {MAX_CAPABILITIES}",
            param_hint="--capability",
        )
    return tuple(sorted(capabilities))
