"""``session watch``: follow one session's event stream, surviving dropped connections.

The server sends the events stored after ``since`` and then live ones, each with the
session's gap-free ``seq``. The watcher remembers the last ``seq`` it printed; after a
drop it reconnects with ``?since=<last>`` (with backoff), so it shows every event once,
in order, across server restarts. Anything with ``seq <= last`` is skipped.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any
from uuid import UUID

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.sync.client import ClientConnection, connect

from .api_client import TOKEN_VARIABLE, ApiClient, operator_headers, websocket_url
from .badges import is_final
from .errors import CliError, ServerUnreachable, describe
from .event_printer import EventPrinter

CLOSE_UNKNOWN_SESSION = 4404
CLOSE_UNAUTHORIZED = 4401
CLOSE_SLOW_CONSUMER = 4008
# Normal, going away, abnormal (no close frame), server error, service restart, try
# again later, bad gateway, and the server cutting off a consumer that fell behind.
RECONNECT_CODES = frozenset({1000, 1001, 1006, 1011, 1012, 1013, 1014, CLOSE_SLOW_CONSUMER})
FIRST_DELAY = 0.2
MAX_DELAY = 5.0
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 1.0
READ_SLICE = 0.25
"""How often a waiting read looks whether Ctrl-C was pressed."""


class Dropped(Exception):
    """The stream ended in a way worth reconnecting after."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class Backoff:
    """0.2 s, doubling up to 5 s; back to the start once the server talks again."""

    first: float = FIRST_DELAY
    ceiling: float = MAX_DELAY
    current: float = FIRST_DELAY

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.ceiling)
        return delay

    def reset(self) -> None:
        self.current = self.first


@dataclass
class Watch:
    """One ``session watch``. ``run`` returns when the session reached a final state
    (unless ``follow``); it raises ``CliError`` for what reconnecting cannot fix."""

    url: str
    session_id: UUID
    printer: EventPrinter
    notice: Callable[[str], None]
    since: int = 0
    follow: bool = False

    def __post_init__(self) -> None:
        self.last_seq = self.since
        self._backoff = Backoff()
        self._connected_once = False
        self._interrupted = False

    def stream_url(self) -> str:
        return websocket_url(self.url, f"/ws/sessions/{self.session_id}?since={self.last_seq}")

    def run(self) -> None:
        """Raises ``KeyboardInterrupt`` on Ctrl-C, from between two reads: raised from
        inside the WebSocket library's wait, it could leave the connection unable to
        close (the process then hung instead of exiting)."""
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._interrupt)
        try:
            while True:
                try:
                    self._connect_and_read()
                    return
                except Dropped as drop:
                    self.printer.finish()
                    delay = self._backoff.next()
                    self.notice(f"reconnecting… ({drop.why}; next try in {delay:.1f} s)")
                    self._pause(delay)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        if self._interrupted:  # pressed twice: at once
            raise KeyboardInterrupt
        self._interrupted = True

    def _check_interrupted(self) -> None:
        if self._interrupted:
            raise KeyboardInterrupt

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check_interrupted()
            time.sleep(min(left, READ_SLICE))

    def print_stored(self, api: ApiClient) -> None:
        """Print the stored events after ``since``, for a session that has ended: no
        final transition will come on the stream to end the watch."""
        while True:
            items = api.events(str(self.session_id), since=self.last_seq).body["items"]
            if not items:
                return
            for item in items:
                self._handle(json.dumps(item, ensure_ascii=False))

    def _connect_and_read(self) -> None:
        """Connect, then read until the session is over."""
        try:
            connection = connect(
                self.stream_url(),
                open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
                additional_headers=operator_headers(),
            )
        except InvalidURI as exc:
            raise CliError(f"cannot open a WebSocket to {exc.uri}: {exc.msg}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status >= 500 or status == 429:
                raise self._drop(f"HTTP {status} on connect") from None
            raise CliError(
                f"the server at {self.url} refused the event stream with HTTP {status}"
            ) from None
        except (OSError, InvalidHandshake) as exc:
            raise self._drop(describe(exc)) from None
        self._connected_once = True
        with connection:
            self._read(connection)

    def _drop(self, why: str) -> Exception:
        if not self._connected_once:
            return ServerUnreachable(self.url, why)
        return Dropped(why)

    def _read(self, connection: ClientConnection) -> None:
        while True:
            self._check_interrupted()
            try:
                frame = connection.recv(timeout=READ_SLICE)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else 1006
                reason = exc.rcvd.reason if exc.rcvd else ""
                if code == CLOSE_UNKNOWN_SESSION:
                    raise CliError(reason or f"session {self.session_id} does not exist") from None
                if code == CLOSE_UNAUTHORIZED:
                    raise CliError(
                        f"the server refused the event stream: {reason}; set {TOKEN_VARIABLE} "
                        "to an operator or viewer token (`orchestrator token create`)"
                    ) from None
                if code in RECONNECT_CODES:
                    raise Dropped(f"connection closed, code {code}") from None
                raise CliError(
                    f"the server closed the event stream: code {code} {reason}".rstrip()
                ) from None
            self._backoff.reset()
            raw = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            if self._handle(raw):
                return

    def _handle(self, raw: str) -> bool:
        """Print one frame unless it is a ping or already shown; True once it ends the watch."""
        try:
            event: Any = json.loads(raw)
        except ValueError:
            self.notice(f"ignored a frame that is not JSON: {raw[:80]!r}")
            return False
        if not isinstance(event, dict) or event.get("type") == "ping":
            return False
        seq = event.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq:
                return False
            self.last_seq = seq
        self.printer.event(event, raw)
        return not self.follow and _ends_session(event)


def _ends_session(event: dict[str, Any]) -> bool:
    payload = event.get("payload")
    return (
        event.get("type") == "session.transition"
        and isinstance(payload, dict)
        and is_final(payload.get("to"))
    )
