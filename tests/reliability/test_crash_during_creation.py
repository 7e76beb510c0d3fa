"""The server SIGKILLed 5 times while 8 clients create 2,000 sessions with idempotency
keys: no acknowledged session is lost, none is made twice, every history is whole.

Each client repeats a request with the same ``Idempotency-Key`` until it is acknowledged
(201, or 200 for a replay), as a careful client does when its connection dies mid-request.
Whatever the server had committed before it died is found again; whatever it had not is
made by the repeat; nothing is made twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from ..server_process import ServerProcess
from .chaos import SCALE
from .test_engine_e2e import backend_env

__all__ = ["backend_env"]  # the fixture: SQLite, or PostgreSQL + Redis

pytestmark = pytest.mark.slow

API = "/api/v1"
SESSIONS = 2000 * SCALE
CLIENTS = 8
KILLS = 5 * SCALE


def test_sigkills_during_creation_lose_and_duplicate_nothing(
    backend_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**backend_env, "LOG_LEVEL": "WARNING", "ORCHESTRATOR_HOME": str(tmp_path / "home")}
    acknowledged: dict[str, str] = {}
    lock = threading.Lock()
    failures: list[str] = []
    with ServerProcess(env, tmp_path / "server") as server:
        server.start()

        def client(number: int) -> None:
            with httpx.Client(base_url=server.base_url + API, timeout=10.0) as http:
                for index in range(number, SESSIONS, CLIENTS):
                    key = f"crash-{index:05d}"
                    body = {"title": f"Session {index}", "initial_prompt": "p"}
                    for _ in range(600):
                        try:
                            response = http.post(
                                "/sessions", json=body, headers={"Idempotency-Key": key}
                            )
                        except httpx.TransportError:
                            time.sleep(0.05)  # the server is down: same key, again
                            continue
                        if response.status_code in (200, 201):
                            with lock:
                                acknowledged[key] = response.json()["id"]
                            break
                        if response.status_code != 503:
                            failures.append(f"{key}: {response.status_code} {response.text}")
                            return
                        time.sleep(0.05)
                    else:
                        failures.append(f"{key}: never acknowledged")
                        return

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        back_in: list[float] = []
        for kill in range(1, KILLS + 1):
            # Spread the kills over the run: the k-th once k/(KILLS+1) of it is done.
            while len(acknowledged) < SESSIONS * kill // (KILLS + 1) and any(
                t.is_alive() for t in threads
            ):
                time.sleep(0.01)
            server.kill()
            down = time.monotonic()
            server.start()
            back_in.append(time.monotonic() - down)
        for thread in threads:
            thread.join(timeout=300)
        took = time.monotonic() - started
        assert failures == []
        assert len(acknowledged) == SESSIONS

        with httpx.Client(base_url=server.base_url + API, timeout=30.0) as http:
            stored: dict[str, str] = {}
            page = 1
            while True:
                listed = http.get("/sessions", params={"page": page, "page_size": 100}).json()
                for item in listed["items"]:
                    stored[item["id"]] = item["title"]
                if page * 100 >= listed["total"]:
                    break
                page += 1
            lost = [k for k, sid in acknowledged.items() if sid not in stored]
            titles = list(stored.values())
            duplicates = len(titles) - len(set(titles))
            gaps = 0
            for session_id in acknowledged.values():
                seqs = [t["seq"] for t in http.get(f"/sessions/{session_id}/transitions").json()]
                gaps += seqs != list(range(1, len(seqs) + 1))
    print(
        f"\n[crash during creation] {SESSIONS} sessions by {CLIENTS} clients in {took:.1f} s, "
        f"{KILLS} SIGKILLs, serving again {min(back_in):.2f}-{max(back_in):.2f} s after each; "
        f"{len(lost)} lost, {duplicates} duplicated, {gaps} histories with a gap"
    )
    assert lost == []
    assert duplicates == 0
    assert len(stored) == SESSIONS
    assert gaps == 0
