"""The routable agent set as bytes, for a cache shared by replicas (``SnapshotCache``).

Routing reads every agent; with thousands registered, that read is the cost of a routing
decision. A snapshot of the routable agents (HEALTHY or DEGRADED, with room for work) is
cached for a moment. It may be that moment stale, which is harmless: routing reserves
nothing, and a lease is always taken against the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from ..domain.agents.agent import Agent, agent_fields, agent_from_fields
from ..domain.agents.routing import ROUTABLE_STATUSES

ROUTABLE_KEY = "agents:routable"


def routable(agents: Sequence[Agent]) -> list[Agent]:
    return [a for a in agents if a.status in ROUTABLE_STATUSES and not a.at_capacity]


def encode(agents: Sequence[Agent]) -> bytes:
    items = [agent_fields(agent) for agent in agents]
    return json.dumps(items, separators=(",", ":"), default=_text).encode()


def decode(raw: bytes) -> list[Agent]:
    return [agent_from_fields(item) for item in json.loads(raw)]


def _text(value: object) -> str:
    """Ids and times as JSON text (``agent_from_fields`` reads them back)."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")
