"""How the OpenCode executor runs a turn: its deadline, how often it polls, which
permissions it answers on the operator's behalf, the default model, the loop guard and
how long a failing provider is given. Built once from the settings by ``runtime``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...domain.tasks.loop_guard import GuardPolicy


@dataclass(frozen=True, slots=True)
class OpenCodePolicy:
    task_timeout_seconds: float
    poll_seconds: float = 2.0
    permission_policy: str = "workspace"
    """``workspace``: allowed when every path asked for is inside the tree; ``ask``:
    every request waits for the operator."""
    default_model: str | None = None
    guard: GuardPolicy = field(default_factory=GuardPolicy)
    provider_retry_budget_seconds: float = 180.0
    unconfigured_fix: str = "set OPENCODE_MODEL=provider/model and that provider's key"
    """What to set when the provider keeps failing and no model is named (the runtime
    says it from the settings: ``model_setting``)."""
