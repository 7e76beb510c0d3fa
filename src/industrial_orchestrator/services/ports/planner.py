"""The architect agent that proposes a session's plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ...domain.sessions.session import Session


@dataclass(frozen=True, slots=True)
class ProposedPlan:
    answer: str
    """The architect's answer, untrusted (``domain.agents.plans`` checks it)."""
    tokens_used: int = 0
    cost_usd: float = 0.0


class Planner(Protocol):
    """Asks the architect agent for a session's plan."""

    async def propose(self, session: Session, request: str) -> ProposedPlan: ...
