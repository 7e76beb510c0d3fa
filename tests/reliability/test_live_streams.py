"""Live WebSocket streams against real ``orchestrator serve`` processes, under the
conditions that break naive fan-out: a client that stops reading, Redis dying mid-stream,
a watcher on another replica, a reconnect after hundreds of missed events, a rewind.

What holds in every case: a client sees each event once, in cursor order, without gap;
when it is cut off or reconnects, the cursor it is told (or the last one it saw) is
enough to get exactly the rest.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from ..api.helpers import API
from ..backends import (
    REDIS_HOST,
    postgres_url_for,
    require_redis,
    temporary_postgres_database,
)
from ..private_services import PrivateRedis, private_redis
from ..server_process import ServerProcess

__all__ = ["private_redis"]  # the fixture

pytestmark = pytest.mark.slow

WAIT = 30.0
SLOW_CLIENTS = 'orchestrator_ws_slow_clients_total{stream="session"}'
SESSION_STREAMS = 'orchestrator_ws_connections{stream="session"}'

Event = dict[str, Any]


# --- HTTP helpers ---------------------------------------------------------------------


def new_session(http: httpx.Client, **fields: Any) -> str:
    response = http.post(f"{API}/sessions", json={"title": "t", "initial_prompt": "p", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def act(http: httpx.Client, sid: str, action: str) -> None:
    response = http.post(f"{API}/sessions/{sid}/{action}")
    assert response.status_code == 200, response.text


def post_log(http: httpx.Client, sid: str, text: str) -> int:
    """Append ``text`` to the session's log; how many events it became."""
    response = http.post(f"{API}/sessions/{sid}/logs", json={"stream": "stdout", "text": text})
    assert response.status_code == 201, response.text
    return int(response.json()["events"])


def stored_session_events(http: httpx.Client, sid: str) -> list[Event]:
    """The session's whole log, paged through the REST API."""
    events: list[Event] = []
    since = 0
    while True:
        page = http.get(f"{API}/sessions/{sid}/events", params={"since": since, "limit": 1000})
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        if not items:
            return events
        events.extend(items)
        since = page.json()["next_since"]


def metric(http: httpx.Client, sample: str) -> float | None:
    """The value of one sample of ``GET /metrics`` (``name{labels}``), None if absent."""
    for line in http.get("/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return None


# --- WebSocket helpers ----------------------------------------------------------------


def ws_url(server: ServerProcess, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def receive(ws: ClientConnection, timeout: float = WAIT) -> Event:
    """The next message that is not a heartbeat."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            message: Event = json.loads(ws.recv(timeout=max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            pytest.fail(f"no message within {timeout}s")
        if message.get("type") != "ping":
            return message


def receive_events(ws: ClientConnection, count: int, timeout: float = WAIT) -> list[Event]:
    return [receive(ws, timeout) for _ in range(count)]


def seqs(events: list[Event]) -> list[int]:
    return [event["seq"] for event in events]


def ids(events: list[Event]) -> list[int]:
    return [event["id"] for event in events]


def log_text(events: list[Event]) -> str:
    return "".join(event["payload"]["text"] for event in events if event["type"] == "session.log")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still not true after {timeout}s")
        time.sleep(0.05)


class Collector:
    """Reads a connection on a thread of its own, as fast as the server sends, keeping
    every event; ``closed`` is how the connection ended, if it did."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[Event] = []
        self.highest = 0
        self.closed: ConnectionClosed | None = None
        self.failure: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                message: Event = json.loads(self.ws.recv())
                if message.get("type") == "ping":
                    continue
                with self._changed:
                    self.events.append(message)
                    self.highest = max(self.highest, message.get("seq") or 0)
                    self._changed.notify_all()
        except ConnectionClosed as exc:
            with self._changed:
                self.closed = exc
                self._changed.notify_all()
        except BaseException as exc:
            with self._changed:
                self.failure = exc
                self._changed.notify_all()

    def wait_for_seq(self, seq: int, timeout: float = WAIT) -> list[Event]:
        """Every event received once one with ``seq`` or beyond has come."""
        with self._changed:
            self._changed.wait_for(
                lambda: self.highest >= seq or self.closed is not None or self.failure is not None,
                timeout,
            )
            assert self.failure is None, f"the reader failed: {self.failure!r}"
            assert self.closed is None, (
                f"closed by the server after {len(self.events)} events: {self.closed!r}"
            )
            assert self.highest >= seq, (
                f"waited {timeout}s for seq {seq}; the highest received is {self.highest}"
            )
            return list(self.events)

    def join(self) -> None:
        self._thread.join(timeout=WAIT)


# --- 1. A stalled client --------------------------------------------------------------

# Smaller than one flood post (14 events): the reading client's queue overflows on every
# post and it is served from the log instead, never cut off.
QUEUE_SIZE = 4
SEND_TIMEOUT = 1.0
FLOOD_POST_BYTES = 200 * 1024
FLOOD_CAP_BYTES = 60 * 1024 * 1024


@contextmanager
def stalled_connection(url: str, port: int) -> Iterator[ClientConnection]:
    """A client that reads nothing until the test asks it to.

    A small receive buffer on its socket, and a client library that stops reading the
    socket once one message waits unread, make the server's socket buffers fill after a
    few hundred KiB; no keepalive pings, so the client library does not give up on the
    connection by itself while it is not reading. Compression is off, because the
    permessage-deflate the library negotiates by default would shrink the flood.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    with connect(
        url,
        sock=sock,
        max_queue=1,
        compression=None,
        ping_interval=None,
        close_timeout=2,
        open_timeout=10,
    ) as ws:
        yield ws


def flood_until_a_client_is_cut_off(http: httpx.Client, sid: str) -> tuple[list[str], int]:
    """Post large incompressible logs until the server reports a slow client; returns
    the texts posted and how many events they became."""
    texts: list[str] = []
    events = 0
    while len(texts) * FLOOD_POST_BYTES < FLOOD_CAP_BYTES:
        texts.append(os.urandom(FLOOD_POST_BYTES // 2).hex())
        events += post_log(http, sid, texts[-1])
        if metric(http, SLOW_CLIENTS):
            return texts, events
    pytest.fail(
        f"posted {FLOOD_CAP_BYTES // 2**20} MiB ({events} events) to a session watched by a "
        f"client that reads nothing, and {SLOW_CLIENTS} is still "
        f"{metric(http, SLOW_CLIENTS)}: the server never decided the client was too slow"
    )


def read_until_closed(ws: ClientConnection) -> tuple[list[Event], ConnectionClosed]:
    events: list[Event] = []
    try:
        while True:
            message: Event = json.loads(ws.recv(timeout=WAIT))
            if message.get("type") != "ping":
                events.append(message)
    except TimeoutError:
        pytest.fail(f"received {len(events)} events, then nothing for {WAIT}s and no close")
    except ConnectionClosed as exc:
        return events, exc


def test_a_stalled_client_is_cut_off_while_a_reading_one_gets_everything(tmp_path: Path):
    env = {
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "WS_QUEUE_SIZE": str(QUEUE_SIZE),
        "WS_SEND_TIMEOUT_SECONDS": str(SEND_TIMEOUT),
        "LOG_LEVEL": "WARNING",
    }
    with ServerProcess(env, tmp_path / "server") as server:
        server.start()
        with server.client() as http:
            sid = new_session(http)
            url = ws_url(server, f"/ws/sessions/{sid}")
            with (
                stalled_connection(url, server.port) as stalled,
                connect(url, compression=None, close_timeout=2) as healthy,
            ):
                reader = Collector(healthy)
                reader.wait_for_seq(1)  # session.created: both streams are live
                texts, flooded = flood_until_a_client_is_cut_off(http, sid)
                last = 1 + flooded

                # The reading client was not slowed down, let alone cut off.
                received = reader.wait_for_seq(last)
                stored = stored_session_events(http, sid)
                assert seqs(stored) == list(range(1, last + 1))
                assert seqs(received) == seqs(stored)
                assert ids(received) == ids(stored)
                assert log_text(received) == "".join(texts)
                assert metric(http, SLOW_CLIENTS) == 1.0
                assert metric(http, SESSION_STREAMS) == 1.0

                # The stalled client, reading at last: what was sent before the cut, in
                # order, then the close that tells it where to resume.
                prefix, closed = read_until_closed(stalled)
            assert prefix, "the stalled client received nothing, not even session.created"
            cut = prefix[-1]["seq"]
            assert seqs(prefix) == list(range(1, cut + 1))
            assert ids(prefix) == ids(stored[:cut])
            assert cut < last
            assert closed.rcvd is not None, (
                f"after {cut} events the connection ended without a close frame: {closed!r}"
            )
            assert closed.rcvd.code == 4008, closed.rcvd
            assert closed.rcvd.reason.endswith(f"since={cut}"), closed.rcvd

            # Resuming from that cursor delivers exactly the rest, then live events.
            with connect(f"{url}?since={cut}", compression=None) as resumed:
                rest = receive_events(resumed, last - cut)
                assert post_log(http, sid, "after the flood") == 1
                after = receive(resumed)
        reader.join()
    assert seqs(rest) == list(range(cut + 1, last + 1))
    assert ids(rest) == ids(stored[cut:])
    assert log_text(prefix) + log_text(rest) == "".join(texts)
    assert (after["seq"], after["payload"]["text"]) == (last + 1, "after the flood")


# --- 2. Redis dies mid-stream ---------------------------------------------------------


def wait_for_publication(pubsub: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None and message["type"] == "message":
            return
    pytest.fail(f"nothing published on the event channel within {timeout}s")


def test_killing_redis_mid_stream_loses_no_event(tmp_path: Path, private_redis: PrivateRedis):
    private_redis.start()
    prefix = f"io-test-{uuid.uuid4().hex[:8]}"
    channel = f"{prefix}:events"
    with temporary_postgres_database("io_test_redis_outage") as database:
        env = {
            "DATABASE_URL": postgres_url_for(database),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(private_redis.port),
            "REDIS_PREFIX": prefix,
            "EVENT_POLL_SECONDS": "0.5",
            "LOG_LEVEL": "WARNING",
        }
        with ServerProcess(env, tmp_path / "a") as a, ServerProcess(env, tmp_path / "b") as b:
            a.start()
            b.start()

            def listening() -> bool:
                return private_redis.subscribers(channel) == 2

            wait_until(listening, "both replicas subscribed to the event channel")
            with a.client() as http:
                sid = new_session(http)
                url = ws_url(b, f"/ws/sessions/{sid}")
                posted: list[str] = []

                def produce(tag: str, count: int) -> int:
                    """Logs through A; the seq of the last one."""
                    for n in range(count):
                        posted.append(f"{tag} {n}")
                        assert post_log(http, sid, posted[-1]) == 1
                    return len(stored_session_events(http, sid))

                with connect(url) as watcher:
                    reader = Collector(watcher)
                    with connect(url) as leaver:
                        act(http, sid, "start")
                        before = produce("before", 5)
                        reader.wait_for_seq(before)
                        assert seqs(receive_events(leaver, before)) == list(range(1, before + 1))

                        private_redis.kill()
                        act(http, sid, "pause")
                        produce("outage", 5)
                        act(http, sid, "resume")
                        last = len(stored_session_events(http, sid))
                        # Redis is dead: only B's periodic re-read of the log brings these.
                        reader.wait_for_seq(last)
                        during = receive_events(leaver, last - before)
                        assert seqs(during) == list(range(before + 1, last + 1))
                        left_at = last

                    # While the second client is away, still without Redis.
                    last = produce("missed", 10)
                    reader.wait_for_seq(last)
                    with connect(f"{url}?since={left_at}") as back:
                        missed = receive_events(back, last - left_at)
                        assert seqs(missed) == list(range(left_at + 1, last + 1))

                        # Redis comes back on the same port: both replicas subscribe
                        # again and A publishes its commits there again.
                        private_redis.start()
                        wait_until(listening, "both replicas subscribed again after restart")
                        with private_redis.client() as probe, probe.pubsub() as pubsub:
                            pubsub.subscribe(channel)
                            last = produce("after", 1)
                            wait_for_publication(pubsub)
                        last = produce("after more", 5)
                        received = reader.wait_for_seq(last)
                        resumed = receive_events(back, last - left_at - len(missed))
                stored = stored_session_events(http, sid)
        reader.join()
    assert seqs(stored) == list(range(1, last + 1))
    assert seqs(received) == seqs(stored)
    assert ids(received) == ids(stored)
    assert [e["payload"]["text"] for e in received if e["type"] == "session.log"] == posted
    assert [e["payload"]["to"] for e in received if e["type"] == "session.transition"] == [
        "RUNNING",
        "PAUSED",
        "RUNNING",
    ]
    assert ids(missed + resumed) == ids(stored[left_at:])


# --- 3. The global stream across replicas ---------------------------------------------


def synchronise(ws: ClientConnection) -> None:
    """Return once the stream's starting cursor is fixed.

    The server accepts the connection before it reads "now" (the default start of
    ``/ws``), and answers control messages only after that: a pong proves that what is
    committed from here on is after the cursor.
    """
    ws.send(json.dumps({"type": "ping"}))
    assert receive(ws) == {"type": "pong"}


def test_the_global_stream_of_one_replica_shows_what_is_done_through_the_other(
    tmp_path: Path,
):
    require_redis()
    with temporary_postgres_database("io_test_global_stream") as database:
        env = {
            "DATABASE_URL": postgres_url_for(database),
            "REDIS_HOST": REDIS_HOST,
            "REDIS_PREFIX": f"io-test-{uuid.uuid4().hex[:8]}",
            # Far above the wait: what arrives was woken through Redis, not re-read.
            "EVENT_POLL_SECONDS": "300",
            "LOG_LEVEL": "WARNING",
        }
        with ServerProcess(env, tmp_path / "a") as a, ServerProcess(env, tmp_path / "b") as b:
            a.start()
            b.start()
            with a.client() as http, connect(ws_url(b, "/ws")) as ws:
                synchronise(ws)
                sid = new_session(http)
                act(http, sid, "start")
                created, started = receive_events(ws, 2)
                page = http.get(f"{API}/events", params={"since": 0}).json()["items"]
    assert (created["type"], created["session_id"], created["seq"]) == (
        "session.created",
        sid,
        1,
    )
    assert (started["type"], started["session_id"], started["seq"]) == (
        "session.transition",
        sid,
        2,
    )
    assert started["payload"]["to"] == "RUNNING"
    assert 0 < created["id"] < started["id"]
    assert ids(page) == [created["id"], started["id"]]


# --- 4. Reconnecting to the global stream ---------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"ORCHESTRATOR_HOME": str(tmp_path / "home"), "LOG_LEVEL": "WARNING"}
    with ServerProcess(env, tmp_path / "server") as process:
        process.start()
        yield process


def test_reconnecting_to_the_global_stream_gets_exactly_the_missed_events(
    server: ServerProcess,
):
    with server.client() as http:
        first, second = new_session(http), new_session(http)
        with connect(ws_url(server, "/ws?since=0")) as ws:
            history = receive_events(ws, 2)
        assert [(e["type"], e["session_id"]) for e in history] == [
            ("session.created", first),
            ("session.created", second),
        ]
        last_seen = history[-1]["id"]

        expected = []
        for n in range(500):
            sid = (first, second)[n % 2]
            expected.append((sid, f"line {n}"))
            assert post_log(http, sid, f"line {n}") == 1

        with connect(ws_url(server, f"/ws?since={last_seen}")) as ws:
            missed = receive_events(ws, 500)
            assert post_log(http, first, "live") == 1
            live = receive(ws)
        page = http.get(f"{API}/events", params={"since": last_seen, "limit": 1000}).json()
    missed_ids = ids(missed)
    assert all(earlier < later for earlier, later in pairwise(missed_ids))
    assert missed_ids[0] > last_seen
    assert [(e["session_id"], e["payload"]["text"]) for e in missed] == expected
    assert ids(page["items"]) == [*missed_ids, live["id"]]
    assert (live["session_id"], live["payload"]["text"]) == (first, "live")
    assert live["id"] > missed_ids[-1]


# --- 5. Rewinding a stream ------------------------------------------------------------


def test_rewinding_replays_the_history_then_live_events_continue(server: ServerProcess):
    with server.client() as http:
        sid = new_session(http, auto_start=True)
        for n in range(3):
            assert post_log(http, sid, f"old {n}") == 1
        with connect(ws_url(server, f"/ws/sessions/{sid}")) as ws:
            first_pass = receive_events(ws, 5)
            assert post_log(http, sid, "live 1") == 1
            live = receive(ws)

            ws.send(json.dumps({"since": 0}))
            replay = receive_events(ws, 6)
            assert post_log(http, sid, "live 2") == 1
            after_replay = receive(ws)

            ws.send(json.dumps({"since": 4}))
            partial = receive_events(ws, 3)
            assert post_log(http, sid, "live 3") == 1
            after_partial = receive(ws)
        stored = stored_session_events(http, sid)
    assert seqs(first_pass) == [1, 2, 3, 4, 5]
    assert live["seq"] == 6
    assert ids(replay) == ids(stored[:6])
    assert seqs(replay) == [1, 2, 3, 4, 5, 6]
    assert (after_replay["seq"], after_replay["payload"]["text"]) == (7, "live 2")
    assert seqs(partial) == [5, 6, 7]
    assert (after_partial["seq"], after_partial["payload"]["text"]) == (8, "live 3")
    assert seqs(stored) == list(range(1, 9))
