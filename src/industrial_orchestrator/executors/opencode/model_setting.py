"""Which model the internal agents will ask, as far as the settings tell without calling
a provider: said at start-up (``serve``), in ``/ready`` and by the dashboard's banner.

Without ``OPENCODE_MODEL`` (or a ``model`` in ``OPENCODE_CONFIG``, or one per agent in
``OPENCODE_AGENTS``) OpenCode picks its own default, which needs a provider key in its
environment or ``auth.json``; without one, every task waits on a provider that never
answers. Whether a key is valid is only known once a provider is called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...config import Settings
from .fleet import FleetConfigError, load_fleet

HOW_TO_SET = (
    "set OPENCODE_MODEL=provider/model (e.g. anthropic/claude-sonnet-4-5) and that provider's "
    "key in the orchestrator's environment (e.g. ANTHROPIC_API_KEY); see docs/opencode.md"
)


@dataclass(frozen=True, slots=True)
class ModelSetting:
    enabled: bool
    """Whether internal agents run here at all (``INTERNAL_AGENTS`` and ``ENGINE_ENABLED``)."""
    model: str | None
    source: str | None
    """The setting that names ``model``: OPENCODE_MODEL, OPENCODE_CONFIG or OPENCODE_AGENTS."""
    external: str | None = None
    """``host:port`` of an OpenCode server we do not start, whose own configuration may
    name a model we cannot see."""

    @property
    def configured(self) -> bool | None:
        """True: a model is named; False: none is (OpenCode's default applies); None:
        not known here (an external server's own configuration decides)."""
        if self.model is not None:
            return True
        return None if self.external else False

    @property
    def summary(self) -> str:
        """One phrase for the start line."""
        if not self.enabled:
            return "no internal agents here (INTERNAL_AGENTS or ENGINE_ENABLED is false)"
        if self.model is not None:
            return f"model {self.model} ({self.source}; its provider key is checked at first use)"
        if self.external:
            return (
                f"model: whatever the OpenCode server at {self.external} is configured with "
                "(OPENCODE_MODEL unset)"
            )
        return (
            "NO MODEL CONFIGURED for the internal agents: OpenCode's own default applies, "
            f"which without a provider key cannot answer; {HOW_TO_SET}"
        )

    @property
    def fix(self) -> str:
        """What the operator should set when the provider keeps failing."""
        if self.model is not None:
            return (
                f"check the model {self.model} ({self.source}) and its provider's key in "
                "OpenCode's environment, or set OPENCODE_MODEL to a provider that answers"
            )
        return f"no model is configured for the internal agents: {HOW_TO_SET}"

    def details(self) -> dict[str, Any]:
        return {
            "internal_agents": self.enabled,
            "configured": self.configured if self.enabled else None,
            "model": self.model,
            "source": self.source,
            "summary": self.summary,
        }


def model_setting(settings: Settings) -> ModelSetting:
    """What the settings say about the internal agents' model."""
    external = (
        f"{settings.opencode_host}:{settings.opencode_port}" if settings.opencode_host else None
    )
    if not (settings.internal_agents and settings.engine_enabled):
        return ModelSetting(False, None, None, external)
    if settings.opencode_model:
        return ModelSetting(True, settings.opencode_model, "OPENCODE_MODEL", external)
    # OPENCODE_CONFIG is handed only to a server we start.
    configured = None if external else _config_model(settings.opencode_config)
    if configured:
        return ModelSetting(True, configured, "OPENCODE_CONFIG", external)
    every_agent = _fleet_model(settings.opencode_agents)
    if every_agent:
        return ModelSetting(True, every_agent, "OPENCODE_AGENTS", external)
    return ModelSetting(True, None, None, external)


def _config_model(text: str | None) -> str | None:
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError:
        return None  # the managed server will say what is wrong with it
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, str) and model.strip() else None


def _fleet_model(text: str | None) -> str | None:
    """The agents' models when every agent of ``OPENCODE_AGENTS`` names one (one that
    does not falls back to OpenCode's default)."""
    if not text:
        return None
    try:
        fleet = load_fleet(text)
    except FleetConfigError:
        return None
    models = [agent.model for agent in fleet]
    if not models or any(model is None for model in models):
        return None
    return ", ".join(sorted({model for model in models if model}))
