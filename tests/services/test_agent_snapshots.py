"""The routable-agent snapshot replicas share keeps every field of an agent: a field
added to ``Agent`` and forgotten in its mapping would route on a default."""

from __future__ import annotations

import pytest

from industrial_orchestrator.services import agent_snapshots

from ..domain.agent_builders import every_field_set

pytestmark = pytest.mark.fast


def test_an_agent_comes_back_from_the_snapshot_whole():
    agent = every_field_set()
    assert agent_snapshots.decode(agent_snapshots.encode([agent])) == [agent]
