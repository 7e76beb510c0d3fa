"""Operators' API tokens: made (shown once), listed, revoked, and checked on requests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import uuid4

import structlog

from ..domain.errors import Conflict, InvalidInput, NotFound
from ..domain.operator_tokens import TOKEN_PREFIX, OperatorToken, Role, digest_of, new_secret
from .ports import Clock, DuplicateKeyError, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.operator_tokens")

# Matched whole (fullmatch): "$" would also match before a trailing newline.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: OperatorToken
    secret: str
    """The token itself: shown this once, never stored."""


class OperatorTokens:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def create(self, name: str, role: Role) -> IssuedToken:
        if not NAME.fullmatch(name):
            raise InvalidInput(
                f"token name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
                {"field": "name"},
            )
        secret = new_secret()
        token = OperatorToken(uuid4(), name, role, digest_of(secret), self._clock())
        async with self._uow() as uow:
            try:
                await uow.operator_tokens.add(token)
            except DuplicateKeyError:
                raise Conflict(
                    f"a token named {name!r} exists already (revoked ones keep their name)",
                    {"name": name},
                ) from None
            await uow.commit()
        log.info("operator_token_created", name=name, role=role.value, token_id=str(token.id))
        return IssuedToken(token, secret)

    async def list(self) -> list[OperatorToken]:
        async with self._uow.reader() as uow:
            return await uow.operator_tokens.all()

    async def revoke(self, name: str) -> None:
        async with self._uow() as uow:
            if not await uow.operator_tokens.revoke(name, self._clock()):
                known = await uow.operator_tokens.by_name(name)
                if known is None:
                    raise NotFound(f"no token named {name!r}", {"name": name})
                raise Conflict(f"the token {name!r} is revoked already", {"name": name})
            await uow.commit()
        log.info("operator_token_revoked", name=name)

    async def authenticate(self, secret: str) -> OperatorToken | None:
        """The active token ``secret`` is, or None (unknown, malformed or revoked)."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        async with self._uow.reader() as uow:
            token = await uow.operator_tokens.by_digest(digest_of(secret))
        return token if token is not None and token.active else None
