"""Operators' API tokens: who may read, who may also act.

A token is a long random secret shown once when it is made; only its SHA-256 digest is
stored, so a copy of the database lets nobody in. (A slow password hash buys nothing for
a 256-bit random secret, and every request checks one.) Tokens are revoked, never
deleted: the record of who had access stays.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

TOKEN_PREFIX = "orch_"
# The dashboard's sign-in cookie (HttpOnly, SameSite=Strict), holding the token itself.
COOKIE_NAME = "orchestrator_token"
# Methods that change nothing: all a viewer may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(StrEnum):
    OPERATOR = "operator"
    """Reads everything and commands: creates sessions, starts, stops, answers permissions."""
    VIEWER = "viewer"
    """Reads everything, changes nothing."""


@dataclass(frozen=True, slots=True)
class OperatorToken:
    id: UUID
    name: str
    role: Role
    digest: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may(self, method: str) -> bool:
        """Whether this token's role allows a request with ``method``."""
        return self.role == Role.OPERATOR or method.upper() in READ_METHODS


def new_secret() -> str:
    """A fresh token: the prefix (so that a leaked one is recognisable) and 256 bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_token(key: str, secret: str) -> str:
    """The value the dashboard's own pages send back with their changes: bound to the
    signed-in token by a keyed hash, so another site cannot know it."""
    return hmac.new(key.encode(), b"csrf:" + secret.encode(), hashlib.sha256).hexdigest()


def same_token(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())
