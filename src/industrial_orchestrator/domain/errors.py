"""The one exception root of the orchestrator and the failures the domain names.

Each error carries what an operator needs to act on it; the API translates them once
(``api/errors.py``) into the JSON error shape and a status code.
"""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""

    code = "orchestrator_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class NotFound(OrchestratorError):
    code = "not_found"


class Conflict(OrchestratorError):
    code = "conflict"


class IllegalTransition(Conflict):
    """The requested transition is not in the table for the session's current state."""

    code = "illegal_transition"


class VersionConflict(Conflict):
    """A guarded update found the row at another version (or state) than expected."""

    code = "version_conflict"


class IdempotencyKeyReused(Conflict):
    """An idempotency key was sent again with a different request body."""

    code = "idempotency_key_reused"


class CapacityExhausted(Conflict):
    """No running slot is free (``MAX_CONCURRENT_SESSIONS``)."""

    code = "capacity_exhausted"


class AlreadyRetried(Conflict):
    """A session is retried at most once; the next attempt retries the retry."""

    code = "already_retried"


class InvalidInput(OrchestratorError):
    """Input that passed the schema but breaks a domain rule."""

    code = "invalid_input"


class ArtifactPathRefused(InvalidInput):
    """An artifact path that is not a plain relative path inside the task's workspace."""

    code = "artifact_path_refused"


class Unauthorized(OrchestratorError):
    """No credential, or one that is forged, expired, revoked or for someone else."""

    code = "unauthorized"


class Forbidden(OrchestratorError):
    """A valid credential that does not allow this action."""

    code = "forbidden"


class PayloadTooLarge(OrchestratorError):
    code = "payload_too_large"


class ExecutorUnavailable(OrchestratorError):
    """The thing that does the work (e.g. the OpenCode server) cannot be reached."""

    code = "executor_unavailable"


class WorkspaceUnusable(OrchestratorError):
    """A session's working tree could not be prepared, committed, restored or read."""

    code = "workspace_error"


class WorkspaceGone(WorkspaceUnusable):
    """A session's working tree is gone and cannot be rebuilt."""

    code = "workspace_gone"


class StorageUnavailable(OrchestratorError):
    """The database could not be reached or dropped the connection; safe to retry."""

    code = "database_unavailable"
