"""Operators' tokens (``storage/operator_token_repository.py`` in memory)."""

from __future__ import annotations

from datetime import datetime

from ...domain.operator_tokens import OperatorToken
from ...services.ports import DuplicateKeyError
from .store import Transaction

TOKENS = "operator_tokens"


class MemoryOperatorTokenRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def _one(self, name: str | None = None, digest: str | None = None) -> OperatorToken | None:
        for token in self._tx.rows(TOKENS):
            if token.name == name or token.digest == digest:
                found: OperatorToken = token
                return found
        return None

    async def add(self, token: OperatorToken) -> None:
        if self._tx.get(TOKENS, token.id) is not None or self._one(token.name, token.digest):
            raise DuplicateKeyError(f"token {token.id}, its name or its digest exists")
        self._tx.put(TOKENS, token.id, token)

    async def by_digest(self, digest: str) -> OperatorToken | None:
        return self._one(digest=digest)

    async def by_name(self, name: str) -> OperatorToken | None:
        return self._one(name=name)

    async def all(self) -> list[OperatorToken]:
        tokens: list[OperatorToken] = list(self._tx.rows(TOKENS))
        # The SQL one orders by creation alone; ties here by id.
        return sorted(tokens, key=lambda token: (token.created_at, token.id))

    async def revoke(self, name: str, at: datetime) -> bool:
        token = self._one(name=name)
        if token is None or token.revoked_at is not None:
            return False
        self._tx.put(
            TOKENS,
            token.id,
            OperatorToken(token.id, token.name, token.role, token.digest, token.created_at, at),
        )
        return True
