"""Operators' tokens: digests, roles and revocations."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.operator_tokens import OperatorToken, Role
from ..services.ports import DuplicateKeyError
from .rows import utc
from .tables import operator_tokens


class SqlOperatorTokenRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._db = connection

    async def add(self, token: OperatorToken) -> None:
        try:
            await self._db.execute(
                sa.insert(operator_tokens).values(
                    id=token.id,
                    name=token.name,
                    role=token.role.value,
                    digest=token.digest,
                    created_at=token.created_at,
                    revoked_at=token.revoked_at,
                )
            )
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    async def by_digest(self, digest: str) -> OperatorToken | None:
        return await self._one(operator_tokens.c.digest == digest)

    async def by_name(self, name: str) -> OperatorToken | None:
        return await self._one(operator_tokens.c.name == name)

    async def all(self) -> list[OperatorToken]:
        result = await self._db.execute(
            sa.select(operator_tokens).order_by(operator_tokens.c.created_at)
        )
        return [_token(row) for row in result.mappings()]

    async def revoke(self, name: str, at: datetime) -> bool:
        """Revoke an active token; False when there is none of that name to revoke."""
        result = await self._db.execute(
            sa.update(operator_tokens)
            .where(operator_tokens.c.name == name, operator_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return result.rowcount == 1

    async def _one(self, condition: sa.ColumnElement[bool]) -> OperatorToken | None:
        result = await self._db.execute(sa.select(operator_tokens).where(condition))
        row = result.mappings().first()
        return _token(row) if row else None


def _token(row: RowMapping) -> OperatorToken:
    created = utc(row["created_at"])
    assert created is not None
    return OperatorToken(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        digest=row["digest"],
        created_at=created,
        revoked_at=utc(row["revoked_at"]),
    )
