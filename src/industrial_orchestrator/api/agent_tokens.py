"""The credentials of external agents: short-lived JWTs signed with ``SECRET_KEY``.

The algorithm is pinned (HS256 only: a token claiming ``none`` or another algorithm is
refused before its signature is looked at), the audience and issuer are checked, and
every claim we rely on is required. A token names its agent in ``sub``; the agent's
record must still exist, so deregistering an agent revokes all its tokens at once.

A token verified once is remembered with its expiry (a few thousand at most): an agent
sends the same token with every request until its next heartbeat, and checking its
signature and claims again is a tenth of the server's work on a task's two requests
(measured with py-spy). Remembered, it is still refused from the second it expires.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import jwt

from ..domain.errors import Unauthorized
from ..services.ports import Clock

ALGORITHM = "HS256"
AUDIENCE = "industrial-orchestrator:eap"
ISSUER = "industrial-orchestrator"
_REQUIRED = ["exp", "iat", "sub", "aud", "iss", "jti"]
_VERIFIED_KEPT = 4096


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


class AgentTokens:
    def __init__(self, secret: str, *, lifetime: timedelta, clock: Clock) -> None:
        if len(secret) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters to sign agent tokens")
        self._secret = secret
        self._lifetime = lifetime
        self._clock = clock
        self._verified: OrderedDict[str, tuple[UUID, float]] = OrderedDict()
        """Tokens verified, with their agent and expiry (seconds since the epoch)."""

    def issue(self, agent_id: UUID) -> IssuedToken:
        now = self._clock()
        expires = now + self._lifetime
        claims = {
            "sub": str(agent_id),
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_hex(16),
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires)

    def verify(self, token: str) -> UUID:
        """The agent id the token was issued to, or ``Unauthorized`` saying why not."""
        known = self._verified.get(token)
        if known is not None:
            holder, expires = known
            # As PyJWT judges it: expired from the second ``exp`` names, no leeway.
            if expires > time.time():
                self._verified.move_to_end(token)
                return holder
            del self._verified[token]
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The agent token has expired; register again") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("The token is not an agent token") from None
        except jwt.PyJWTError:
            raise Unauthorized("The agent token is not valid") from None
        try:
            holder = UUID(str(claims["sub"]))
        except ValueError:
            raise Unauthorized("The agent token names no agent") from None
        self._verified[token] = (holder, float(claims["exp"]))
        if len(self._verified) > _VERIFIED_KEPT:
            self._verified.popitem(last=False)
        return holder
