"""PostgreSQL killed (``pg_ctl stop -m immediate``, no clean shutdown; a cluster of the
test's own, never the machine's) and started again under a steady load of writes: while
it is down the API answers 503 with Retry-After, never 500; no acknowledged write is lost;
the server serves again once the database is back, without a restart of its own."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ..private_services import PrivatePostgres, private_postgres
from ..server_process import ServerProcess
from .chaos import SCALE

pytestmark = pytest.mark.slow

__all__ = ["private_postgres"]  # the fixture

API = "/api/v1"
CLIENTS = 4
DOWN_SECONDS = 3.0 * SCALE


def test_a_database_outage_gives_503s_loses_nothing_and_heals_by_itself(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    env = {
        "DATABASE_URL": private_postgres.url,
        "LOG_LEVEL": "WARNING",
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
    }
    acknowledged: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()
    with ServerProcess(env, tmp_path / "server") as server:
        server.start()

        def client(number: int) -> None:
            with httpx.Client(base_url=server.base_url + API, timeout=10.0) as http:
                index = 0
                while not stop.is_set():
                    key = f"outage-{number}-{index}"
                    try:
                        response = http.post(
                            "/sessions",
                            json={"title": key, "initial_prompt": "p"},
                            headers={"Idempotency-Key": key},
                        )
                    except httpx.TransportError:
                        statuses[0] += 1
                        time.sleep(0.05)
                        continue
                    with lock:
                        statuses[response.status_code] += 1
                        if response.status_code in (200, 201):
                            acknowledged[key] = response.json()["id"]
                            index += 1
                        elif response.status_code == 503:
                            retry_after.add(response.headers.get("retry-after", ""))
                    if response.status_code == 503:
                        time.sleep(0.1)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.5)
            before = len(acknowledged)
            private_postgres.stop("immediate")
            time.sleep(DOWN_SECONDS)
        finally:
            private_postgres.start()
        back = time.monotonic()
        for _ in range(600):
            if private_postgres.ready():
                break
            time.sleep(0.05)
        during = len(acknowledged)
        healed_after: float | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(acknowledged) > during:
                healed_after = time.monotonic() - back
                break
            time.sleep(0.05)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        with httpx.Client(base_url=server.base_url + API, timeout=30.0) as http:
            stored = set()
            page = 1
            while True:
                listed = http.get("/sessions", params={"page": page, "page_size": 100}).json()
                stored |= {item["id"] for item in listed["items"]}
                if page * 100 >= listed["total"]:
                    break
                page += 1
    lost = [key for key, sid in acknowledged.items() if sid not in stored]
    print(
        f"\n[database outage] PostgreSQL killed for {DOWN_SECONDS:.0f} s under {CLIENTS} "
        f"writers: {before} writes before, {len(acknowledged)} acknowledged in all; answers "
        f"{dict(sorted(statuses.items()))} (0 = connection refused); writes again "
        f"{healed_after if healed_after is None else round(healed_after, 2)} s after the "
        f"database was back; {len(lost)} acknowledged writes lost"
    )
    assert statuses[500] == 0, "a database outage must be a 503, never a 500"
    assert statuses[503] > 0, "the outage was not seen: the test proves nothing"
    assert retry_after == {"1"}
    assert healed_after is not None, "the server did not serve again after the database came back"
    assert lost == []
    assert len(stored) == len(acknowledged)
