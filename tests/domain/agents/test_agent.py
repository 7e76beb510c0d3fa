"""The agent's one mapping to plain values (``agent_fields``) and back: every field, from
a database row or from JSON text."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from industrial_orchestrator.domain.agents.agent import Agent, agent_fields, agent_from_fields

from ..agent_builders import every_field_set

pytestmark = pytest.mark.fast


def test_every_field_is_mapped_and_read_back():
    agent = every_field_set()
    fields = agent_fields(agent)
    assert set(fields) == {f.name for f in dataclasses.fields(Agent)}
    assert agent_from_fields(fields) == agent


def test_plain_values_only_enums_as_their_values_and_a_list_of_capabilities():
    fields = agent_fields(every_field_set())
    assert (fields["kind"], fields["status"]) == ("external", "degraded")
    assert {type(fields["kind"]), type(fields["status"])} == {str}
    assert fields["capabilities"] == ["python", "review"]


def test_read_back_from_json_text_and_from_a_zoneless_time():
    agent = every_field_set()
    text = json.dumps(agent_fields(agent), default=str)
    assert agent_from_fields(json.loads(text)) == agent
    # SQLite gives times back without their zone: they are UTC.
    fields = agent_fields(agent) | {"registered_at": datetime(2026, 12, 6, 1, 2, 3)}
    assert agent_from_fields(fields).registered_at == datetime(2026, 12, 6, 1, 2, 3, tzinfo=UTC)
