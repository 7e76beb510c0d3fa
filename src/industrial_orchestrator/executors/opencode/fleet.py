"""The internal agent fleet: our own agents, each an OpenCode agent with a model.

The default fleet covers every capability the decomposition templates ask for. An
operator replaces it with ``OPENCODE_AGENTS``, a JSON list of ``FleetAgent`` objects.
Agents are registered (or refreshed, by name) at start-up as ``kind=internal`` and are
routed exactly like external agents.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ...domain.agents.agent import AgentKind, NewAgent

EXECUTOR = "opencode"


class FleetAgent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    agent_type: str = Field(min_length=1, max_length=50)
    capabilities: list[str] = Field(min_length=1, max_length=50)
    opencode_agent: str = Field("build", min_length=1, max_length=100)
    """The OpenCode agent that does the work (``build`` edits files, ``plan`` only reads)."""
    model: str | None = Field(None, pattern=r"^[^/\s]+/\S+$")
    """``provider/model``; ``OPENCODE_MODEL`` (or OpenCode's default) when unset."""
    max_concurrent_tasks: int = Field(2, ge=1, le=100)

    def registration(self, default_model: str | None) -> NewAgent:
        metadata: dict[str, Any] = {
            "executor": EXECUTOR,
            "opencode_agent": self.opencode_agent,
            "model": self.model or default_model,
        }
        return NewAgent(
            name=self.name,
            agent_type=self.agent_type,
            capabilities=self.capabilities,
            kind=AgentKind.INTERNAL,
            max_concurrent_tasks=self.max_concurrent_tasks,
            metadata=metadata,
        )


DEFAULT_FLEET = (
    FleetAgent(
        name="architect",
        agent_type="architect",
        capabilities=["system_design", "api_design", "ux_design", "planning"],
        opencode_agent="plan",
    ),
    FleetAgent(
        name="implementer",
        agent_type="implementer",
        capabilities=[
            "code_generation",
            "database",
            "frontend",
            "api_integration",
            "devops",
            "documentation",
            "accessibility",
            "refactoring",
            "debugging",
        ],
        opencode_agent="build",
    ),
    FleetAgent(
        name="reviewer",
        agent_type="reviewer",
        capabilities=["code_review", "static_analysis"],
        opencode_agent="plan",
    ),
    FleetAgent(
        name="security-auditor",
        agent_type="security_auditor",
        capabilities=["security_audit", "static_analysis", "security"],
        opencode_agent="plan",
    ),
    FleetAgent(
        name="tester",
        agent_type="tester",
        capabilities=["testing", "unit_tests", "integration_tests"],
        opencode_agent="build",
    ),
)

_FLEET = TypeAdapter(list[FleetAgent])


class FleetConfigError(ValueError):
    """``OPENCODE_AGENTS`` does not define a usable fleet."""


def load_fleet(text: str | None) -> list[FleetAgent]:
    """The fleet of ``OPENCODE_AGENTS`` (JSON), or the default one when unset."""
    if text is None or not text.strip():
        return list(DEFAULT_FLEET)
    try:
        fleet = _FLEET.validate_python(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise FleetConfigError(f"OPENCODE_AGENTS is not a valid fleet: {exc}") from None
    names = [agent.name for agent in fleet]
    if len(set(names)) != len(names):
        raise FleetConfigError("OPENCODE_AGENTS names an agent twice; names are unique")
    return fleet
