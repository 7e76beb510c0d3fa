"""Decomposition: a prompt, or one existing task, planned as a tree of tasks.

The template is chosen (``template_choice``) or named, its steps are filled in with the
prompt's subject (``subjects``), and ``validate_plan`` checks the result, as it checks any
plan that comes from elsewhere (an architect agent's).

Recursion (``max_depth`` 2 or 3): a code-generation step heavier than
``SPLIT_EFFORT_HOURS`` is split again with the generic plan specialised to it; the
children's keys are prefixed with the parent's key (``logic.implement``). In the tree:

* a child without a dependency among its siblings inherits its parent's dependencies, so
  it cannot start before the work its parent waited for;
* the parent depends on all of its children: it can only become READY once they are
  finished (it is a summary node, its effort the whole estimate; the dependency view
  weighs it 0 so that effort is not counted twice).

So the flat dependency graph of a tree is acyclic and every key points inside the tree
(``validate_plan`` checks both).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from ..errors import InvalidInput
from ..tasks.graph import CycleDetected, check_known, find_cycle
from ..tasks.task import TaskType, normalise_capabilities
from .plans import Decomposition, PlannedTask, Step, TemplateChoice
from .subjects import clip, extract_subject, subject_of_title
from .template_choice import choose_template
from .templates import GENERIC, GENERIC_STEPS, TEMPLATES

MIN_DEPTH, MAX_DEPTH = 1, 3
# Code-generation steps heavier than this (hours) are split again when depth allows.
SPLIT_EFFORT_HOURS = 4.0
SPLIT_TYPES = frozenset({TaskType.CODE_GENERATION})
MIN_EFFORT_HOURS = 0.25
_EXCERPT_CHARS = 200


def _excerpt(prompt: str) -> str:
    return clip(" ".join(prompt.split()), _EXCERPT_CHARS)


def _describe(step: Step, subject: str, request: str) -> str:
    description = step.description.format(subject=subject)
    return f'{description} Request: "{request}"' if request else description


def _plan_steps(
    steps: Sequence[Step],
    *,
    subject: str,
    request: str,
    prefix: str = "",
    parent_key: str | None = None,
    inherited: tuple[str, ...] = (),
    extra_capabilities: Iterable[str] = (),
    total_effort: float | None = None,
) -> list[PlannedTask]:
    """The steps as planned tasks; efforts are scaled to ``total_effort`` when given."""
    extra = tuple(extra_capabilities)
    scale = 1.0
    if total_effort is not None:
        scale = total_effort / sum(step.effort for step in steps)
    planned = []
    for step in steps:
        deps = tuple(prefix + dep for dep in step.depends_on) or inherited
        capabilities = step.capabilities
        if step.task_type == TaskType.CODE_GENERATION:
            capabilities = capabilities + extra
        planned.append(
            PlannedTask(
                key=prefix + step.key,
                title=step.title.format(subject=subject),
                description=_describe(step, subject, request),
                task_type=step.task_type,
                required_capabilities=normalise_capabilities(capabilities),
                estimated_effort=max(MIN_EFFORT_HOURS, round(step.effort * scale, 2)),
                depends_on=deps,
                parent_key=parent_key,
            )
        )
    return planned


def _should_split(task: PlannedTask) -> bool:
    return task.task_type in SPLIT_TYPES and task.estimated_effort > SPLIT_EFFORT_HOURS


def _expand(tasks: list[PlannedTask], depth_left: int, request: str) -> list[PlannedTask]:
    """Split heavy tasks with the generic plan, ``depth_left`` more levels; pre-order."""
    result: list[PlannedTask] = []
    for task in tasks:
        if depth_left <= 0 or not _should_split(task):
            result.append(task)
            continue
        children = _plan_steps(
            GENERIC_STEPS,
            subject=subject_of_title(task.title),
            request=request,
            prefix=task.key + ".",
            parent_key=task.key,
            inherited=task.depends_on,
            extra_capabilities=task.required_capabilities,
            total_effort=task.estimated_effort,
        )
        result.append(replace(task, depends_on=(*task.depends_on, *(c.key for c in children))))
        result.extend(_expand(children, depth_left - 1, request))
    return result


def _check_depth(max_depth: int) -> None:
    if not MIN_DEPTH <= max_depth <= MAX_DEPTH:
        raise InvalidInput(
            f"max_depth must be between {MIN_DEPTH} and {MAX_DEPTH}, got {max_depth}",
            {"field": "max_depth", "value": max_depth, "min": MIN_DEPTH, "max": MAX_DEPTH},
        )


def decompose(
    prompt: str, *, template: str | None = None, max_depth: int = 1, title: str | None = None
) -> Decomposition:
    """Plan ``prompt`` as a task tree with the chosen (or named) template.

    ``max_depth`` 1 gives the template's steps; 2 and 3 split heavy code-generation steps
    again (see the module docstring). ``title`` (the parent task's or session's title) is
    the subject when none can be read from the prompt. Raises ``InvalidInput`` for an
    unknown template or a depth outside 1..3.
    """
    _check_depth(max_depth)
    choice = choose_template(prompt, template)
    subject = extract_subject(prompt, choice.template, fallback=title)
    request = _excerpt(prompt)
    top = _plan_steps(TEMPLATES[choice.template].steps, subject=subject, request=request)
    tasks = tuple(_expand(top, max_depth - 1, request))
    validate_plan(tasks)
    return Decomposition(choice, subject, tasks, max_depth)


# Which templates ``decompose_task`` may pick by itself for a task of each type: a
# documentation task that mentions "endpoints" is not a CRUD API to build.
_BUILD_TEMPLATES = ("microservice", "crud", "security", "ui")
_AUTO_TEMPLATES: dict[TaskType, tuple[str, ...]] = {
    TaskType.CODE_GENERATION: _BUILD_TEMPLATES,
    TaskType.DESIGN: _BUILD_TEMPLATES,
    TaskType.SECURITY_AUDIT: ("security",),
    TaskType.REVIEW: ("security",),
}


def _focused_steps(task_type: TaskType, capabilities: tuple[str, ...]) -> tuple[Step, ...]:
    """The plan for splitting a task that is not code: scope it, do it, check it."""
    return (
        Step(
            "scope",
            "Scope {subject}",
            "Gather what {subject} needs: inputs, constraints, open questions.",
            TaskType.RESEARCH,
            ("research",),
            1.0,
        ),
        Step(
            "execute",
            "Carry out {subject}",
            "Do the work of {subject} within the agreed scope.",
            task_type,
            capabilities or (task_type.value,),
            3.0,
            ("scope",),
        ),
        Step(
            "check",
            "Check the outcome of {subject}",
            "Check that the result of {subject} is complete and correct.",
            TaskType.REVIEW,
            ("code_review",),
            1.0,
            ("execute",),
        ),
    )


def decompose_task(
    title: str,
    description: str,
    task_type: TaskType,
    *,
    required_capabilities: Iterable[str] = (),
    estimated_effort: float | None = None,
    template: str | None = None,
    max_depth: int = 1,
) -> Decomposition:
    """Split one existing task into subtasks (``POST /tasks/{id}/decompose``).

    The template is chosen from the title and description unless named, among those that
    suit the task's type (any for design and code generation, ``security`` for audits and
    reviews, none for the other types). When none fits,
    the plan is specialised to the task: a code-generation task gets the generic plan, any
    other type a scope -> carry out -> check plan whose middle step keeps the task's type;
    the task's capabilities go to its implementation step and, given
    ``estimated_effort``, the subtasks share that effort.

    Top-level subtasks have ``parent_key`` None: the service links them to the task
    (``parent_id``), gives the subtasks without dependencies the task's own dependencies
    and makes the task depend on its subtasks, as ``decompose`` does inside a tree.
    """
    _check_depth(max_depth)
    text = f"{title}\n{description}".strip()
    choice = choose_template(text, template)
    if not choice.explicit and choice.template not in _AUTO_TEMPLATES.get(task_type, ()):
        choice = TemplateChoice(GENERIC, 0.0, (), explicit=False)
    request = _excerpt(description or title)
    capabilities = normalise_capabilities(required_capabilities)
    if choice.template == GENERIC:
        subject = subject_of_title(title)
        steps: Sequence[Step] = (
            GENERIC_STEPS if task_type in SPLIT_TYPES else _focused_steps(task_type, capabilities)
        )
        top = _plan_steps(
            steps,
            subject=subject,
            request=request,
            extra_capabilities=capabilities,
            total_effort=estimated_effort,
        )
    else:
        subject = extract_subject(text, choice.template, fallback=title)
        top = _plan_steps(TEMPLATES[choice.template].steps, subject=subject, request=request)
    tasks = tuple(_expand(top, max_depth - 1, request))
    validate_plan(tasks)
    return Decomposition(choice, subject, tasks, max_depth)


def validate_plan(tasks: Sequence[PlannedTask]) -> None:
    """Check a plan's shape; the gate for plans produced elsewhere (e.g. an architect agent).

    Raises ``InvalidInput`` for an empty or duplicate key, a dependency or parent key
    outside the plan, a non-positive effort or a task without capabilities, and
    ``CycleDetected`` for a dependency cycle (or a task that is its own ancestor).
    """
    keys: dict[str, PlannedTask] = {}
    for task in tasks:
        if not task.key:
            raise InvalidInput("every planned task needs a key", {"field": "key"})
        if task.key in keys:
            raise InvalidInput(f"duplicate task key {task.key!r}", {"key": task.key})
        if not task.estimated_effort > 0:
            raise InvalidInput(
                f"task {task.key!r} needs a positive estimated effort",
                {"key": task.key, "estimated_effort": task.estimated_effort},
            )
        if not task.required_capabilities:
            raise InvalidInput(
                f"task {task.key!r} needs at least one capability", {"key": task.key}
            )
        keys[task.key] = task
    check_known(keys, {task.key: task.depends_on for task in tasks})
    for task in tasks:
        if task.parent_key is not None and task.parent_key not in keys:
            raise InvalidInput(
                f"task {task.key!r} has unknown parent {task.parent_key!r}",
                {"key": task.key, "parent_key": task.parent_key},
            )
    cycle = find_cycle({task.key: task.depends_on for task in tasks})
    if cycle is None:
        parents = {task.key: (task.parent_key,) for task in tasks if task.parent_key}
        cycle = find_cycle(parents)
    if cycle is not None:
        raise CycleDetected(cycle)
