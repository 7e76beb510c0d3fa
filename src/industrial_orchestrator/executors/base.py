"""Executors: how a task leased to one of *our own* agents gets done.

Two ways to get work to an agent, one bookkeeping:

* **External agents pull** (the External Agent Protocol): they long-poll for a task,
  report its result and stream its output over HTTP. Nothing here runs for them; their
  leases, results and aborts (a heartbeat's ``abort`` list) go through ``TaskLeases``.
* **Internal agents are driven**: registered with ``kind=internal`` and
  ``metadata.executor`` naming an executor of this process (e.g. ``opencode``). The
  runtime's dispatcher leases READY tasks for them, hands each to the executor as a
  ``Job``, and records the ``Outcome`` it returns through the same ``TaskLeases`` calls
  an external agent makes over HTTP. So routing, leases, fencing, retries and tier
  bookkeeping are one and the same for both kinds.

An executor is an adapter: it performs a job and says how it went; it knows no service
and no database. What it needs to know (the goal, the shared context, the finished
dependencies) comes in the job, and what it says while it works goes out through the
job's two callbacks. It is stopped by cancelling the ``execute`` call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..domain.agents.agent import Agent
from ..domain.events import LogStream
from ..domain.tasks.artifacts import Artifact
from ..domain.tasks.loop_guard import LoopStop
from ..domain.tasks.task import Task

LogLine = Callable[[LogStream, str], Awaitable[None]]
"""A line of the task's output for its session's terminal (best effort)."""
HoldUp = Callable[[str | None], Awaitable[None]]
"""What holds up the attempt now (the session shows DEGRADED), or None: nothing any more."""


@dataclass(frozen=True, slots=True)
class Job:
    """One leased attempt at a task, with what doing it needs."""

    agent: Agent
    task: Task
    attempt: int
    workspace: Path
    """Where the work is done: the session's working tree."""
    finished_dependencies: Sequence[Task]
    goal: str | None
    """The session's prompt."""
    context: Mapping[str, Any]
    """The shared context in force for this agent and task."""
    max_tokens: int | None
    """The session's token budget."""
    emit: LogLine
    hold_up: HoldUp


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an executor made of a task."""

    succeeded: bool
    summary: str | None = None
    error: str | None = None
    artifacts: Sequence[Artifact] = ()
    output: dict[str, Any] = field(default_factory=dict)
    tokens_used: int = 0
    cost_usd: float = 0.0
    write_artifacts: bool = True
    loop_stop: LoopStop | None = None
    """The loop guard stopped the task (``domain.tasks.loop_guard``)."""
    final: bool = False
    """A failure another attempt would only repeat (a provider outage past its budget,
    ``domain.provider_outage``): the task fails without being tried again."""


class TreeSnapshots(Protocol):
    """Snapshots of a working tree for the loop guard (``workspaces.snapshots``); none
    of them moves a branch, ``HEAD`` or the tree's index."""

    async def snapshot(self, path: Path, message: str) -> str:
        """A commit of the files as they are now; ``roll_back`` returns to it."""

    async def fingerprint(self, path: Path) -> str:
        """A string that is the same exactly when the files are the same."""

    async def roll_back(self, path: Path, snapshot: str) -> list[str]:
        """Put the paths changed since ``snapshot`` back as they were; returns them."""


class Executor(Protocol):
    name: str

    @property
    def unavailable_reason(self) -> str | None:
        """Why the executor cannot take work now (None when it can)."""

    async def execute(self, job: Job) -> Outcome:
        """Do the job; cancelled when the task is no longer the agent's."""

    async def close(self) -> None: ...
