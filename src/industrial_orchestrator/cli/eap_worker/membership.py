"""The agent's membership of the orchestrator: registering (``POST .../register``),
registering again when a token is refused, and leaving (``DELETE .../{agent_id}``).

Registration answers the agent id, the bearer token every other request carries
(``auth``) and the heartbeat interval. A token can be refused later (401: the server
restarted with another SECRET_KEY, or was down longer than a token lives); registering
again under the same name resumes the same agent, so the worker carries on (``rejoin``).
It stops only when the agent was removed (401 ``agent_removed``) or registration itself
is refused: ``revoked`` then says why, and ``stopping`` is set.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
from rich.console import Console
from rich.text import Text

from ... import __version__
from ..errors import CliError, ServerUnreachable, describe
from .console import Warn
from .protocol import EAP, PROTOCOL_VERSION, Json, error_code, error_message
from .settings import WorkerConfig


class Membership:
    """Who the worker is to the orchestrator: its agent id, its current token and the
    heartbeat interval asked of it, or why it was turned away (``revoked``)."""

    def __init__(
        self,
        config: WorkerConfig,
        http: httpx.AsyncClient,
        console: Console,
        warn: Warn,
        stopping: asyncio.Event,
    ) -> None:
        self.config = config
        self.http = http
        self.stopping = stopping
        self._console = console
        self._warn = warn
        self.agent_id = ""
        self.token = ""
        self.heartbeat_seconds = 30.0
        self.revoked: str | None = None
        self._register_lock = asyncio.Lock()

    def auth(self) -> dict[str, str]:
        """The headers that say which agent sends a request."""
        return {"Authorization": f"Bearer {self.token}", "X-Agent-ID": self.agent_id}

    async def register(self) -> None:
        """Join the orchestrator; a ``CliError`` when it cannot be reached or refuses."""
        response = await self._post_registration()
        if response.status_code != 201:
            raise CliError(f"registration refused: {error_message(response)}")
        self._adopt(response.json())
        config = self.config
        if config.any_capability:
            taking = f"any task ({len(config.capabilities)} capabilities)"
        else:
            taking = "tasks needing " + ", ".join(config.capabilities)
        slots = "1 slot" if config.concurrency == 1 else f"{config.concurrency} slots"
        self._console.print(
            Text.assemble(
                ("worker ", "bold"),
                (config.name, "bold cyan"),
                f" is agent {self.agent_id} on {config.url}: {taking}, {slots}, "
                f"running: {config.command}",
            )
        )

    def renew(self, ack: Json) -> None:
        """Adopt the fresh token and interval a heartbeat answered."""
        self.token = ack["auth_token"]
        self.heartbeat_seconds = float(ack["heartbeat_interval_seconds"])

    async def rejoin(self, refused: httpx.Response, sent_token: str) -> bool:
        """After a 401 to a request sent with ``sent_token``: register again (once, however
        many requests were refused together). True when a new token is in place, so the
        request should be sent again; False when the worker is stopping (the agent was
        removed, or registration was refused) or the server could not be reached (the
        caller retries later, as after any unanswered request)."""
        if error_code(refused) == "agent_removed":
            self._revoke(refused)
            return False
        async with self._register_lock:
            if self.revoked is not None:
                return False
            if self.token != sent_token:
                return True  # another request has registered again meanwhile
            try:
                response = await self._post_registration()
            except ServerUnreachable as exc:
                self._warn(f"token refused; registering again failed: {exc}")
                return False
            if response.status_code != 201:
                self.revoked = f"registration refused: {error_message(response)}"
                self.stopping.set()
                return False
            before = self.agent_id
            self._adopt(response.json())
        same = "the same agent" if self.agent_id == before else "a new agent"
        self._console.print(
            f"token refused ({error_message(refused)}): registered again, {same} {self.agent_id}",
            style="yellow",
            markup=False,
        )
        return True

    async def leave(self) -> None:
        """Deregister; when that fails the agent goes offline once its beats stop."""
        try:
            response = await self.http.delete(f"{EAP}/{self.agent_id}", headers=self.auth())
        except httpx.TransportError as exc:
            self._warn(
                f"could not deregister ({describe(exc)}); the orchestrator will mark "
                "the agent offline once its heartbeats stop"
            )
            return
        if response.is_error:
            self._warn(f"could not deregister: {error_message(response)}")
        else:
            self._console.print(f"agent {self.agent_id} deregistered", markup=False)

    async def _post_registration(self) -> httpx.Response:
        config = self.config
        body = {
            "protocol_version": PROTOCOL_VERSION,
            "name": config.name,
            "version": __version__,
            "agent_type": config.agent_type,
            "capabilities": list(config.capabilities),
            "max_concurrent_tasks": config.concurrency,
            "metadata": {"worker": "orchestrator worker", "host": socket.gethostname()},
        }
        headers = {}
        if config.registration_token:
            headers["Authorization"] = f"Bearer {config.registration_token}"
        try:
            return await self.http.post(f"{EAP}/register", json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ServerUnreachable(config.url, describe(exc)) from None

    def _adopt(self, registered: Json) -> None:
        self.agent_id = str(registered["agent_id"])
        self.token = registered["auth_token"]
        self.heartbeat_seconds = float(registered["heartbeat_interval_seconds"])

    def _revoke(self, response: httpx.Response) -> None:
        if self.revoked is None:
            self.revoked = error_message(response)
            self.stopping.set()
