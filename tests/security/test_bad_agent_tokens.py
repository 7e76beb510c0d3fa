"""The bad-JWT list against the agents' protocol: none of them is accepted.

alg none, an RS256 header (HS/RS confusion: a verifier that trusted the header could be fed
a key of the attacker's choosing), HS512, a token signed with another key, expired, not
yet valid (``nbf`` and ``iat`` in the future), wrong audience, wrong issuer, no ``exp``,
no ``jti``, another agent's ``sub``, and the token of an agent that has deregistered."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from industrial_orchestrator.api.agent_tokens import AUDIENCE, ISSUER
from tests.api.test_external_agents import EXTERNAL, SECRET, register


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(agent_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {
        "sub": agent_id,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
        "jti": "j" * 32,
        **overrides,
    }
    return {key: value for key, value in claims.items() if value is not None}


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _hs256(claims: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


async def test_every_token_on_the_bad_list_is_refused(client: httpx.AsyncClient) -> None:
    agent = await register(client, name="target")
    other = await register(client, name="bystander")
    now = int(datetime.now(UTC).timestamp())
    bad = {
        "alg none": _unsigned({"alg": "none", "typ": "JWT"}, _claims(agent.id)),
        "alg None": _unsigned({"alg": "None", "typ": "JWT"}, _claims(agent.id)),
        "RS256 header": _unsigned({"alg": "RS256", "typ": "JWT"}, _claims(agent.id), b"\x01" * 256),
        "HS256 keyed with a public key": _hs256(
            _claims(agent.id), "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC"
        ),
        "HS512": jwt.encode(_claims(agent.id), SECRET + "x" * 40, algorithm="HS512"),
        "other key": _hs256(_claims(agent.id), "another-secret-key-that-is-long-enough-000"),
        "expired": _hs256(_claims(agent.id, iat=now - 7200, exp=now - 3600)),
        "not yet valid (nbf)": _hs256(_claims(agent.id, nbf=now + 3600)),
        "issued in the future (iat)": _hs256(_claims(agent.id, iat=now + 3600, exp=now + 7200)),
        "wrong audience": _hs256(_claims(agent.id, aud="industrial-orchestrator:operators")),
        "wrong issuer": _hs256(_claims(agent.id, iss="someone-else")),
        "no exp": _hs256(_claims(agent.id, exp=None)),
        "no jti": _hs256(_claims(agent.id, jti=None)),
        "no sub": _hs256(_claims(agent.id, sub=None)),
        "another agent's sub": _hs256(_claims(other.id)),
        "truncated signature": agent.token[:-5],
        "garbage": "not.a.jwt",
    }
    accepted = []
    for name, token in bad.items():
        response = await client.post(
            f"{EXTERNAL}/{agent.id}/heartbeat",
            json={"status": "healthy"},
            headers={"Authorization": f"Bearer {token}", "X-Agent-ID": agent.id},
        )
        if response.status_code != 401:
            accepted.append(f"{name}: {response.status_code}")
    # Deregistered: its genuine token is dead at once.
    left = await client.delete(f"{EXTERNAL}/{other.id}", headers=other.headers())
    assert left.status_code == 204
    revoked = await client.post(
        f"{EXTERNAL}/{other.id}/heartbeat", json={"status": "healthy"}, headers=other.headers()
    )
    if revoked.status_code != 401:
        accepted.append(f"revoked: {revoked.status_code}")
    print(f"\n[bad JWT list] {len(bad) + 1} forged or stale tokens, {len(accepted)} accepted")
    assert accepted == []
    assert (await agent.beat())["agent_id"] == agent.id  # the genuine one still works
