"""Where a task's command runs and what it is told: the directory (the task's workspace
when this machine has it, else one of the worker's own) and the environment (the
worker's, less its registration secret, plus the task's ``ORCHESTRATOR_*`` variables)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID


def choose_workspace(context: Mapping[str, Any], task_id: str, home: Path) -> tuple[Path, str]:
    """The directory a task's command runs in, and why that one.

    The assignment's ``context["workspace"]`` when it is a directory on this machine, else
    ``<home>/worker/<task_id>`` (created).
    """
    given = context.get("workspace")
    if isinstance(given, str) and given:
        if Path(given).is_dir():
            return Path(given), "the task's workspace"
        reason = f"the task's workspace {given} is not a directory here"
    else:
        reason = "the task names no workspace"
    path = home / "worker" / str(UUID(task_id))  # a UUID: nothing else reaches the path
    path.mkdir(parents=True, exist_ok=True)
    return path, f"a worker directory: {reason}"


def command_env(
    assignment: Mapping[str, Any], base: Mapping[str, str], usage_file: Path
) -> dict[str, str]:
    """The command's environment: the worker's, less its registration secret, plus the
    task's ``ORCHESTRATOR_TASK_*``, ``ORCHESTRATOR_SESSION_ID`` and the
    ``ORCHESTRATOR_USAGE_FILE`` it may report its usage in."""
    env = {key: value for key, value in base.items() if key != "AGENT_REGISTRATION_TOKEN"}
    env.update(
        ORCHESTRATOR_TASK_ID=str(assignment["task_id"]),
        ORCHESTRATOR_SESSION_ID=str(assignment.get("session_id") or ""),
        ORCHESTRATOR_TASK_TYPE=str(assignment.get("task_type", "")),
        ORCHESTRATOR_TASK_TITLE=_env_safe(str(assignment.get("title", ""))),
        ORCHESTRATOR_TASK_ATTEMPT=str(assignment.get("attempt", "")),
        ORCHESTRATOR_TASK_PROMPT=_env_safe(str(assignment.get("input_data", ""))),
        ORCHESTRATOR_USAGE_FILE=str(usage_file),
    )
    return env


def _env_safe(text: str) -> str:
    return text.replace("\0", "")  # an environment string cannot hold NUL
