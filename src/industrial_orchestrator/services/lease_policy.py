"""The settings the lease services run with, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..domain.tasks.artifacts import ArtifactLimits


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    lease_seconds: float
    max_attempts: int
    heartbeat_seconds: float
    started_at: datetime
    """When this orchestrator process started: nobody is reaped for the time it was down."""
    artifact_limits: ArtifactLimits
    artifacts_home: Path
    """Where the artifacts of a task without a session workspace are written."""
    max_parallel_tasks: int = 4
    """A session's tasks READY or RUNNING at once, unless its options say otherwise."""
