"""Redis shut down without saving (``SHUTDOWN NOSAVE``), started again empty, then
flushed (``FLUSHALL``), under a steady load of session transitions on PostgreSQL: Redis
only accelerates, so every acknowledged transition is in the histories once, nothing is
answered 5xx, and the load goes on through both."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis

from ..backends import postgres_url_for, temporary_postgres_database
from ..private_services import PrivateRedis, private_redis
from ..server_process import ServerProcess
from .chaos import SCALE

pytestmark = pytest.mark.slow

__all__ = ["private_redis"]

API = "/api/v1"
CLIENTS = 4
VERBS = {"RUNNING": "pause", "PAUSED": "resume"}


def test_redis_shut_down_and_flushed_under_load_loses_and_duplicates_nothing(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    private_redis.start()
    with temporary_postgres_database("io_redis_outage") as database:
        env = {
            "DATABASE_URL": postgres_url_for(database),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(private_redis.port),
            "REDIS_PREFIX": f"io-test-{uuid.uuid4().hex[:8]}",
            "EVENT_POLL_SECONDS": "0.5",
            "LOG_LEVEL": "WARNING",
            "MAX_CONCURRENT_SESSIONS": "1000",
        }
        won: Counter[str] = Counter()  # session id -> transitions acknowledged
        per_second: Counter[int] = Counter()
        statuses: Counter[int] = Counter()
        stop = threading.Event()
        lock = threading.Lock()
        with ServerProcess(env, tmp_path / "server") as server:
            server.start()
            started = time.monotonic()

            def client(number: int) -> None:
                with httpx.Client(base_url=server.base_url + API, timeout=10.0) as http:
                    made = http.post(
                        "/sessions",
                        json={"title": f"load {number}", "initial_prompt": "p", "auto_start": True},
                    ).json()
                    session_id, state = made["id"], made["status"]
                    while not stop.is_set():
                        try:
                            response = http.post(f"/sessions/{session_id}/{VERBS[state]}")
                        except httpx.TransportError:
                            statuses[0] += 1
                            continue
                        with lock:
                            statuses[response.status_code] += 1
                            if response.status_code == 200:
                                state = response.json()["status"]
                                won[session_id] += 1
                                per_second[int(time.monotonic() - started)] += 1

            threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
            for thread in threads:
                thread.start()
            time.sleep(2.0)
            with private_redis.client() as admin, contextlib.suppress(redis.ConnectionError):
                admin.shutdown(nosave=True)  # the connection dies with the server
            shut_at = time.monotonic() - started
            time.sleep(2.0 * SCALE)
            private_redis.start()  # empty: nothing was saved
            restarted_at = time.monotonic() - started
            time.sleep(2.0)
            with private_redis.client() as admin:
                admin.flushall()
            flushed_at = time.monotonic() - started
            time.sleep(3.0)
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            with httpx.Client(base_url=server.base_url + API, timeout=30.0) as http:
                histories = {sid: http.get(f"/sessions/{sid}/transitions").json() for sid in won}
    timeline = [per_second[second] for second in range(max(per_second) + 1)]
    print(
        f"\n[redis outage] {CLIENTS} writers; SHUTDOWN NOSAVE at {shut_at:.1f} s, started "
        f"again at {restarted_at:.1f} s, FLUSHALL at {flushed_at:.1f} s; transitions per "
        f"second {timeline}; answers {dict(sorted(statuses.items()))}"
    )
    assert all(code < 500 for code in statuses), statuses
    for session_id, history in histories.items():
        seqs = [row["seq"] for row in history]
        assert seqs == list(range(1, len(seqs) + 1)), "a gap or a repeat in the history"
        # Creation, PENDING -> RUNNING, then every acknowledged pause or resume, once.
        assert len(history) == 2 + won[session_id]
    # The load went on through both: transitions were made after each blow.
    assert sum(per_second[s] for s in range(int(shut_at) + 1, int(restarted_at) + 1)) > 0
    assert sum(per_second[s] for s in range(int(flushed_at) + 1, len(timeline))) > 0
