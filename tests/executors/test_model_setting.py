"""What the settings tell about the internal agents' model, without calling a provider:
the start line, ``/ready`` and the dashboard's banner all say it from here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from industrial_orchestrator.config import load_settings
from industrial_orchestrator.executors.opencode.model_setting import model_setting

NONE: dict[str, Any] = {
    "opencode_model": None,
    "opencode_config": None,
    "opencode_agents": None,
    "opencode_host": None,
    "internal_agents": True,
    "engine_enabled": True,
}
AGENT = {"name": "solo", "agent_type": "implementer", "capabilities": ["code_generation"]}


@pytest.mark.parametrize(
    ("changes", "configured", "model", "source"),
    [
        ({}, False, None, None),
        ({"opencode_model": "anthropic/claude-x"}, True, "anthropic/claude-x", "OPENCODE_MODEL"),
        (
            {"opencode_model": "a/b", "opencode_config": json.dumps({"model": "c/d"})},
            True,
            "a/b",
            "OPENCODE_MODEL",
        ),
        ({"opencode_config": json.dumps({"model": "c/d"})}, True, "c/d", "OPENCODE_CONFIG"),
        ({"opencode_config": json.dumps({"small_model": "c/d"})}, False, None, None),
        ({"opencode_config": "{not json"}, False, None, None),
        # OPENCODE_CONFIG is for a server we start: an external server has its own.
        (
            {"opencode_host": "10.0.0.5", "opencode_config": json.dumps({"model": "c/d"})},
            None,
            None,
            None,
        ),
        (
            {"opencode_agents": json.dumps([{**AGENT, "model": "e/f"}])},
            True,
            "e/f",
            "OPENCODE_AGENTS",
        ),
        (
            {"opencode_agents": json.dumps([{**AGENT, "model": "e/f"}, {**AGENT, "name": "two"}])},
            False,
            None,
            None,
        ),
    ],
)
def test_which_model_the_settings_name(
    changes: dict[str, Any], configured: bool | None, model: str | None, source: str | None
) -> None:
    setting = model_setting(load_settings(_env_file=None, **{**NONE, **changes}))
    assert setting.enabled
    assert (setting.configured, setting.model, setting.source) == (configured, model, source)
    assert setting.details()["configured"] is configured


def test_no_model_says_which_setting_to_set() -> None:
    setting = model_setting(load_settings(_env_file=None, **NONE))
    assert setting.summary.startswith("NO MODEL CONFIGURED")
    for text in (setting.summary, setting.fix):
        assert "OPENCODE_MODEL=provider/model" in text
        assert "key" in text


def test_without_internal_agents_there_is_nothing_to_configure() -> None:
    setting = model_setting(load_settings(_env_file=None, **{**NONE, "internal_agents": False}))
    assert not setting.enabled
    assert setting.details()["configured"] is None
    assert "no internal agents" in setting.summary
