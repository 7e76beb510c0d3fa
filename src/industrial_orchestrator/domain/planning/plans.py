"""What plans are made of: template steps, templates, planned tasks and the decomposition.

A ``Template`` (the data in ``templates``) is a list of ``Step``s whose texts hold a
``{subject}``; ``decomposition`` turns the steps into ``PlannedTask``s, the not yet stored
tasks of a ``Decomposition``, which also records the ``TemplateChoice`` made for it.
Frozen values only, so a plan compares equal to itself when planned again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..tasks.task import TaskType


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One task of a plan, before it is stored; ``depends_on`` holds keys of the plan."""

    key: str
    title: str
    description: str
    task_type: TaskType
    required_capabilities: tuple[str, ...]
    estimated_effort: float
    depends_on: tuple[str, ...] = ()
    parent_key: str | None = None
    files: tuple[str, ...] = ()
    """Paths the task is expected to edit (an architect's plan may say)."""


@dataclass(frozen=True, slots=True)
class Step:
    """A template step; ``{subject}`` in the texts is replaced by the prompt's subject."""

    key: str
    title: str
    description: str
    task_type: TaskType
    capabilities: tuple[str, ...]
    effort: float
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    summary: str
    keywords: Mapping[str, float]
    """Phrase -> weight in (0, 1]; weights combine as independent evidence."""
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class TemplateScore:
    template: str
    score: float
    matched: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TemplateChoice:
    template: str
    score: float
    matched: tuple[str, ...]
    explicit: bool


@dataclass(frozen=True, slots=True)
class Decomposition:
    """A plan as a tree: top-level tasks have ``parent_key`` None; tasks in pre-order."""

    choice: TemplateChoice
    subject: str
    tasks: tuple[PlannedTask, ...]
    max_depth: int

    def children(self, parent_key: str | None) -> tuple[PlannedTask, ...]:
        return tuple(t for t in self.tasks if t.parent_key == parent_key)

    def get(self, key: str) -> PlannedTask:
        for task in self.tasks:
            if task.key == key:
                return task
        raise KeyError(key)
