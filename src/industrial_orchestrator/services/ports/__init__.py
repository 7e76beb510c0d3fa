"""What the services need from storage and the outside world, named here and implemented
in ``storage/``, ``workspaces/`` and the executors; one module per concept.

Repositories speak in domain objects; nothing above ``storage/`` sees SQLAlchemy.
"""

from __future__ import annotations

from .agents import AgentRepository
from .contexts import ContextRepository
from .effects import EffectRepository
from .events import EventRepository
from .operator_tokens import OperatorTokenRepository
from .planner import Planner, ProposedPlan
from .sessions import (
    CheckpointRepository,
    IdempotentCreation,
    SessionQuery,
    SessionRepository,
    SessionTotals,
    check_added_after,
)
from .tasks import (
    AttemptRepository,
    LeaseRefused,
    NewLease,
    OpenedLease,
    StoredArtifact,
    TaskRepository,
    check_one_try,
)
from .unit_of_work import DuplicateKeyError, UnitOfWork, UnitOfWorkFactory
from .webhooks import WebhookRepository
from .workspaces import ArtifactWriter, Clock, TreeBinding, WorkingTrees

__all__ = [
    "AgentRepository",
    "ArtifactWriter",
    "AttemptRepository",
    "CheckpointRepository",
    "Clock",
    "ContextRepository",
    "DuplicateKeyError",
    "EffectRepository",
    "EventRepository",
    "IdempotentCreation",
    "LeaseRefused",
    "NewLease",
    "OpenedLease",
    "OperatorTokenRepository",
    "Planner",
    "ProposedPlan",
    "SessionQuery",
    "SessionRepository",
    "SessionTotals",
    "StoredArtifact",
    "TaskRepository",
    "TreeBinding",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "WebhookRepository",
    "WorkingTrees",
    "check_added_after",
    "check_one_try",
]
