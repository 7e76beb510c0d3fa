"""Plans proposed by the architect agent: what it is asked, and the gate its answer passes.

An agent's answer is untrusted input. It must be a JSON object ``{"tasks": [...]}``
(alone, or in a fenced block), within size bounds, each task naming only capabilities
some agent has, and the whole passing the same ``validate_plan`` as a template's plan
(keys unique, dependencies inside the plan, no cycle). Anything else is refused with
``InvalidInput`` saying what is wrong, and the session falls back to its template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from ..errors import InvalidInput
from ..planning.decomposition import validate_plan
from ..planning.plans import Decomposition, PlannedTask, TemplateChoice
from ..tasks.file_conflicts import planned_files
from ..tasks.task import TaskType, normalise_capabilities

ARCHITECT = "architect"
"""The name plans of the architect agent are stored under (as a task's template)."""

MAX_PLAN_CHARS = 64 * 1024
MAX_PLAN_TASKS = 40
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 8_000

PLAN_REQUEST_OPENING = "You are the architect of a team of coding agents."

_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def plan_request(goal: str, capabilities: Collection[str]) -> str:
    """The prompt asking the architect for a plan."""
    known = ", ".join(sorted(capabilities))
    types = ", ".join(t.value for t in TaskType)
    return (
        f"{PLAN_REQUEST_OPENING} Break the goal below into tasks for them. Do not change "
        "any file.\n\n"
        f"# Goal\n{goal.strip()}\n\n"
        "Answer with one JSON object and nothing else, of this shape:\n"
        '{"tasks": [{"key": "short-unique-key", "title": "...", "description": "what to '
        'do, precisely", "task_type": "code_generation", "required_capabilities": '
        '["code_generation"], "estimated_effort": 1.0, "depends_on": ["key of a task that '
        'must be done first"], "files": ["path/it/will/edit.py"]}]}\n\n'
        f"At most {MAX_PLAN_TASKS} tasks. task_type is one of: {types}. "
        f"required_capabilities may only name: {known}. No dependency cycles."
    )


def parse_agent_plan(text: str, known_capabilities: Collection[str], subject: str) -> Decomposition:
    """The architect's answer as a plan, or ``InvalidInput`` saying why it is unusable."""
    if len(text) > MAX_PLAN_CHARS:
        raise InvalidInput(f"the plan is {len(text)} characters; the limit is {MAX_PLAN_CHARS}")
    data = _json_object(text)
    items = data.get("tasks")
    if not isinstance(items, list) or not items:
        raise InvalidInput('the plan has no "tasks" list')
    if len(items) > MAX_PLAN_TASKS:
        raise InvalidInput(f"the plan has {len(items)} tasks; the limit is {MAX_PLAN_TASKS}")
    known = set(known_capabilities)
    tasks = tuple(_task(item, position, known) for position, item in enumerate(items))
    validate_plan(tasks)
    return Decomposition(
        TemplateChoice(ARCHITECT, 1.0, (), explicit=True), subject, tasks, max_depth=1
    )


def _json_object(text: str) -> dict[str, Any]:
    candidates = [match.group(1) for match in _FENCED.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise InvalidInput("the answer holds no JSON object")


def _task(item: Any, position: int, known: set[str]) -> PlannedTask:
    where = f"task {position + 1}"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} is not an object")
    key = _text(item, "key", where, 100)
    title = _text(item, "title", where, MAX_TITLE_CHARS)
    description = _text(item, "description", where, MAX_DESCRIPTION_CHARS, required=False)
    raw_type = item.get("task_type", TaskType.CODE_GENERATION.value)
    try:
        task_type = TaskType(str(raw_type).strip().lower())
    except ValueError:
        raise InvalidInput(f"{where} has an unknown task_type {str(raw_type)[:50]!r}") from None
    capabilities = item.get("required_capabilities")
    if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
        raise InvalidInput(f"{where} needs required_capabilities as a list of names")
    normalised = normalise_capabilities(capabilities)
    unknown = sorted(set(normalised) - known)
    if unknown:
        raise InvalidInput(
            f"{where} ({key!r}) needs capabilities no agent has: {', '.join(unknown)[:200]}"
        )
    effort = item.get("estimated_effort", 1.0)
    if isinstance(effort, bool) or not isinstance(effort, int | float):
        raise InvalidInput(f"{where} has an estimated_effort that is not a number")
    depends_on = item.get("depends_on", [])
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise InvalidInput(f"{where} needs depends_on as a list of task keys")
    files = item.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise InvalidInput(f"{where} needs files as a list of paths")
    try:
        planned = planned_files(files)
    except InvalidInput as exc:
        raise InvalidInput(f"{where} ({key!r}): {exc.message}") from None
    return PlannedTask(
        key=key,
        title=title,
        description=description or title,
        task_type=task_type,
        required_capabilities=normalised,
        estimated_effort=float(effort),
        depends_on=tuple(dict.fromkeys(depends_on)),
        files=planned,
    )


def _text(
    item: dict[str, Any], field: str, where: str, limit: int, *, required: bool = True
) -> str:
    value = item.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where} needs a non-empty {field}")
    if len(value) > limit:
        raise InvalidInput(f"{where} has a {field} longer than {limit} characters")
    return value.strip()
