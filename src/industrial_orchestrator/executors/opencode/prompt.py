"""What an internal agent is told: the session's goal, its task, the layered context the
operator gave, and what the tasks it builds on produced."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ...domain.tasks.task import Task

# Context is the operator's; a runaway one must not crowd the task out of the window.
MAX_CONTEXT_CHARS = 20_000
MAX_SUMMARY_CHARS = 2_000


def task_prompt(
    *,
    goal: str | None,
    task: Task,
    context: Mapping[str, Any],
    finished_dependencies: Sequence[Task],
    workspace: str,
) -> str:
    sections = []
    if goal and goal.strip() != (task.description or "").strip():
        sections.append(f"# Goal of the session\n{goal.strip()}")
    sections.append(f"# Your task: {task.title}\n{(task.description or task.title).strip()}")
    sections.append(
        f"Work only inside {workspace}. Capabilities expected: "
        f"{', '.join(task.required_capabilities) or 'any'}."
    )
    if finished_dependencies:
        done = "\n".join(
            f"- {dep.title}: {_cut(dep.result_summary or 'done', MAX_SUMMARY_CHARS)}"
            for dep in finished_dependencies
        )
        sections.append(f"# Already done (tasks this one builds on)\n{done}")
    if context:
        rendered = json.dumps(dict(context), indent=2, sort_keys=True, default=str)
        sections.append(f"# Context\n{_cut(rendered, MAX_CONTEXT_CHARS)}")
    sections.append("When you are done, answer with a short summary of what you changed.")
    return "\n\n".join(sections)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n[… cut]"
