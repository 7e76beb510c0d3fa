"""A task's output: each line the command prints is echoed on the worker's stdout with
the task's short id, kept (its tail and last line) for the result, and shipped in batches
to the session's terminal (``POST .../{agent_id}/tasks/{task_id}/logs``)."""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
from contextlib import suppress
from typing import TextIO

import httpx

from ..errors import describe
from .console import Warn, short_id
from .protocol import error_message

READ_BYTES = 64 * 1024
LINE_MAX_CHARS = 16 * 1024  # a longer "line" is passed on in pieces
LOG_FLUSH_SECONDS = 0.5
LOG_FLUSH_CHARS = 64 * 1024
LOG_REQUEST_CHARS = 32 * 1024  # at most 128 KiB of UTF-8: well under the server's 256 KiB
LOG_TIMEOUT_SECONDS = 5.0
ERROR_TAIL_CHARS = 2_000
SUMMARY_CHARS = 500


class LogShipper:
    """Ships a task's output to its session's terminal through the EAP
    (``POST .../{agent_id}/tasks/{task_id}/logs``), in batches: every
    ``LOG_FLUSH_SECONDS``, or sooner past ``LOG_FLUSH_CHARS``.

    Best effort: the logs are for people watching, so a failed post is reported once
    and never fails the task.
    """

    def __init__(
        self, http: httpx.AsyncClient, url: str, auth: Callable[[], dict[str, str]], warn: Warn
    ) -> None:
        self._http = http
        self._url = url
        self._auth = auth
        self._warn = warn
        self._chunks: list[tuple[str, str]] = []  # (stream, text), in order
        self._pending_chars = 0
        self._warned = False
        self._closing = False
        self._wake = asyncio.Event()
        self._sender = asyncio.create_task(self._send_batches())

    def add(self, stream: str, text: str) -> None:
        last = self._chunks[-1] if self._chunks else None
        if last and last[0] == stream and len(last[1]) + len(text) <= LOG_REQUEST_CHARS:
            self._chunks[-1] = (stream, last[1] + text)
        else:
            self._chunks.append((stream, text))
        self._pending_chars += len(text)
        if self._pending_chars >= LOG_FLUSH_CHARS:
            self._wake.set()

    async def close(self) -> None:
        """Send what is left, then stop."""
        self._closing = True
        self._wake.set()
        await self._sender

    async def _send_batches(self) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(LOG_FLUSH_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            chunks, self._chunks, self._pending_chars = self._chunks, [], 0
            for stream, text in chunks:
                await self._post(stream, text)
            if self._closing and not self._chunks:
                return

    async def _post(self, stream: str, text: str) -> None:
        try:
            response = await self._http.post(
                self._url,
                json={"stream": stream, "text": text},
                headers=self._auth(),
                timeout=LOG_TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as exc:
            failure = describe(exc)
        else:
            if not response.is_error:
                return
            failure = error_message(response)
        if not self._warned:
            self._warned = True
            self._warn(f"session logs not stored ({failure}); the task goes on")


class TaskOutput:
    """A command's output, line by line: echoed on ``echo`` with the task's short id, its
    tail and last non-empty line kept for the result, and shipped to the session's logs."""

    def __init__(self, task_id: str, echo: TextIO, logs: LogShipper | None) -> None:
        self._prefix = f"[{short_id(task_id)}] "
        self._echo = echo
        self._logs = logs
        self.tail = ""
        self.last_line = ""

    def line(self, stream: str, text: str) -> None:
        self._echo.write(self._prefix + text.rstrip("\n") + "\n")
        self._echo.flush()
        self.tail = (self.tail + text)[-ERROR_TAIL_CHARS:]
        if text.strip():
            self.last_line = text.strip()
        if self._logs is not None:
            self._logs.add(stream, text)

    @property
    def summary(self) -> str:
        return self.last_line[:SUMMARY_CHARS]

    async def pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        """Read ``reader`` to its end, passing on each line as it completes."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while chunk := await reader.read(READ_BYTES):
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                self.line(stream, line + "\n")
            while len(pending) >= LINE_MAX_CHARS:
                self.line(stream, pending[:LINE_MAX_CHARS])
                pending = pending[LINE_MAX_CHARS:]
        pending += decoder.decode(b"", final=True)
        if pending:
            self.line(stream, pending)
