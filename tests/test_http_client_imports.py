"""The project's HTTP clients (the CLI and its worker, the OpenCode client, webhooks, the
benchmarks' agents) import nothing per request.

httpcore, under httpx, asks which async library runs by importing ``sniffio`` on every
request and every lock it makes. anyio no longer depends on sniffio, so without it
declared each request searched ``sys.path`` for it in vain: a fifth of the CPU of the
engine benchmark's agents (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import httpx
import pytest

pytestmark = pytest.mark.fast


class _Searches(importlib.abc.MetaPathFinder):
    """Records every module the import system searches for (it finds none itself)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        self.names.append(fullname)
        return None


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive HTTP/1.1 server that answers every request with ``ok``."""
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def test_a_request_over_a_kept_connection_imports_nothing():
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    searches = _Searches()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            # The first request may import what it needs, once.
            assert (await client.get("/")).text == "ok"
            sys.meta_path.insert(0, searches)
            try:
                for _ in range(3):
                    assert (await client.post("/", json={"n": 1})).text == "ok"
            finally:
                sys.meta_path.remove(searches)
    finally:
        server.close()
        await server.wait_closed()
    assert searches.names == []
