"""Operators' API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ...domain.operator_tokens import OperatorToken


class OperatorTokenRepository(Protocol):
    async def add(self, token: OperatorToken) -> None:
        """Raises ``DuplicateKeyError`` when the name is taken."""

    async def by_digest(self, digest: str) -> OperatorToken | None: ...

    async def by_name(self, name: str) -> OperatorToken | None: ...

    async def all(self) -> list[OperatorToken]:
        """Every token, revoked ones too, oldest first."""

    async def revoke(self, name: str, at: datetime) -> bool:
        """False when no active token has that name."""
