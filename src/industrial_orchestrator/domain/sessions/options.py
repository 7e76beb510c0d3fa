"""How a session is to be run: its plan's template, how its result is verified, and the
limits it runs under. Fixed at creation; a retry inherits them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidInput
from ..money import format_usd
from ..planning.templates import TEMPLATES

SINGLE_TASK = "single"
"""One task of type code_generation needing the capability ``code_generation``."""

TEMPLATE_CHOICES = (*TEMPLATES, SINGLE_TASK)

DEFAULT_REVIEW_ROUNDS = 2

TEMPLATE_PLANNER = "template"
AGENT_PLANNER = "agent"
PLANNERS = (TEMPLATE_PLANNER, AGENT_PLANNER)


@dataclass(frozen=True, slots=True)
class SessionOptions:
    template: str | None = None
    """A template name, ``single``, or None: chosen from the prompt."""
    verify_command: str | None = None
    """Run in the workspace once every task is done; exit 0 means verified."""
    max_review_rounds: int = DEFAULT_REVIEW_ROUNDS
    """Failed verifications that send the session back to work before it gives up."""
    timeout_seconds: int | None = None
    """Overrides SESSION_TIMEOUT_SECONDS."""
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_parallel_tasks: int | None = None
    """Tasks of the session READY or RUNNING at once; None: SESSION_MAX_PARALLEL_TASKS."""
    planner: str = TEMPLATE_PLANNER
    """``template``: the decomposition templates; ``agent``: the architect agent proposes
    the plan (checked like a template's; the template is used when it is unusable)."""
    amendment: str | None = None
    """An operator's instruction added when the session was forked: appended to the
    prompt of every task it still has to do."""
    agents: tuple[str, ...] = ()
    """The names of the agents its tasks are for; empty: any capable agent."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "agents": list(self.agents)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SessionOptions:
        known = {name: value for name, value in (data or {}).items() if name in _FIELDS}
        if "agents" in known:
            known["agents"] = tuple(known["agents"] or ())
        return cls(**known)


_FIELDS = frozenset(SessionOptions.__dataclass_fields__)


def session_options(
    *,
    template: str | None = None,
    verify_command: str | None = None,
    max_review_rounds: int = DEFAULT_REVIEW_ROUNDS,
    timeout_seconds: int | None = None,
    max_tokens: int | None = None,
    max_cost_usd: float | None = None,
    max_parallel_tasks: int | None = None,
    planner: str = TEMPLATE_PLANNER,
    amendment: str | None = None,
    agents: Sequence[str] = (),
) -> SessionOptions:
    """Checked options; raises ``InvalidInput`` naming the field."""
    if template is not None and template not in TEMPLATE_CHOICES:
        raise InvalidInput(
            f"Unknown template {template!r}; choose one of {', '.join(TEMPLATE_CHOICES)}",
            {"field": "template", "choices": list(TEMPLATE_CHOICES)},
        )
    if planner not in PLANNERS:
        raise InvalidInput(
            f"Unknown planner {planner!r}; choose one of {', '.join(PLANNERS)}",
            {"field": "planner", "choices": list(PLANNERS)},
        )
    command = verify_command.strip() if verify_command is not None else None
    if verify_command is not None and not command:
        raise InvalidInput("verify_command must not be blank", {"field": "verify_command"})
    if max_review_rounds < 0:
        raise InvalidInput("max_review_rounds must be 0 or more", {"field": "max_review_rounds"})
    for name, value in (
        ("timeout_seconds", timeout_seconds),
        ("max_tokens", max_tokens),
        ("max_cost_usd", max_cost_usd),
        ("max_parallel_tasks", max_parallel_tasks),
    ):
        if value is not None and not value > 0:
            raise InvalidInput(f"{name} must be positive", {"field": name, "value": value})
    return SessionOptions(
        template=template,
        verify_command=command,
        max_review_rounds=max_review_rounds,
        timeout_seconds=timeout_seconds,
        max_tokens=max_tokens,
        max_cost_usd=max_cost_usd,
        max_parallel_tasks=max_parallel_tasks,
        planner=planner,
        amendment=amendment,
        agents=tuple(dict.fromkeys(agents)),
    )


def budget_exceeded(options: SessionOptions, tokens_used: int, cost_usd: float) -> str | None:
    """Why the session is over its budget (the reason it fails with), or None."""
    if options.max_tokens is not None and tokens_used > options.max_tokens:
        return f"budget_exceeded: {tokens_used} tokens used, budget {options.max_tokens}"
    if options.max_cost_usd is not None and cost_usd > options.max_cost_usd:
        return (
            f"budget_exceeded: {format_usd(cost_usd)} spent,"
            f" budget {format_usd(options.max_cost_usd)}"
        )
    return None
