"""A reference external agent for the External Agent Protocol (EAP, user guide §6).

It does no real work: for each task it writes one artifact, ``results/<task_id>.md``,
holding the task's title and the agent's name. Everything else is what a real agent
must do, and is meant to be read and copied.

The protocol, from the agent's side
-----------------------------------
1. **Register** once: ``POST /api/v1/agents/external/register`` with
   ``{"protocol_version": "1.0", "name", "agent_type", "capabilities", ...}`` (plus
   ``Authorization: Bearer <AGENT_REGISTRATION_TOKEN>`` when the orchestrator asks for
   one). The answer holds ``agent_id``, an ``auth_token`` and the
   ``heartbeat_interval_seconds`` the orchestrator wants. Names are unique (409 if taken).
2. **Authenticate** every later call with ``Authorization: Bearer <auth_token>`` and
   ``X-Agent-ID: <agent_id>``.
3. **Heart-beat** every ``heartbeat_interval_seconds``, from a thread of its own so
   that long work never delays it: ``POST .../{agent_id}/heartbeat`` with
   ``{"status": "healthy", ...}``. Each answer carries a fresh ``auth_token``: use it
   from then on (tokens expire). A heartbeat also renews the leases of the tasks the
   agent holds; an agent that misses 3 beats is marked offline and loses its tasks.
4. **Pull** work: ``POST .../{agent_id}/tasks/next?wait_seconds=N`` waits up to N
   seconds and answers 200 with an assignment, or 204 when there was nothing. The
   assignment's ``attempt`` is a fencing token: keep it. 409 ``agent_not_accepting``
   means the agent is offline, busy or holds as many tasks as it said it could.
5. **Report** ``POST .../{agent_id}/tasks/{task_id}/result`` with
   ``{"task_id", "status": "completed"|"failed", "attempt", "artifacts": [...]}``.
   409 ``lease_lost`` means the task is no longer this agent's (its lease ran out while
   it was silent and another agent took over): the result was discarded, nothing was
   written; drop the task and carry on.
6. **Leave** with ``DELETE .../{agent_id}`` on the way out: any task still held goes
   back to the queue at once instead of waiting for its lease to run out.

Output: one JSON object per line on stdout per event (``registered``, ``task``,
``done``, ``lease_lost``, ...), so that scripts and tests can follow the agent.

Usage::

    python examples/eap_agent.py --url http://127.0.0.1:8000 --name AGENT-1 \\
        --capabilities python,testing [--max-tasks 10] [--idle-exit 30]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import httpx

PROTOCOL_VERSION = "1.0"
EAP = "/api/v1/agents/external"
LONG_POLL_SECONDS = 20.0
REQUEST_TIMEOUT_SECONDS = 10.0
REPORT_TRIES = 3
BEAT_TRIES = 3
BEAT_RETRY_SECONDS = 0.05
RETRY_SECONDS = 1.0
CONNECT_PATIENCE_SECONDS = 30.0


class Terminated(BaseException):
    """SIGTERM arrived: unwind (interrupting a long-poll) and deregister."""


def emit(event: str, **fields: Any) -> None:
    """One event as one JSON line on stdout, flushed at once for whoever is reading."""
    print(json.dumps({"event": event, "time": time.time(), **fields}, default=str), flush=True)


def error_code(response: httpx.Response) -> str | None:
    """The orchestrator's error code: every error answers ``{"error", "message", "details"}``."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def retryable(response: httpx.Response) -> bool:
    """A refusal worth repeating: the server failed, or a concurrent change of the
    agent's record got in the way (409 other than lease_lost and agent_not_accepting)."""
    if response.status_code >= 500:
        return True
    return response.status_code == 409 and error_code(response) not in (
        "lease_lost",
        "agent_not_accepting",
    )


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.http = httpx.Client(base_url=args.url, timeout=REQUEST_TIMEOUT_SECONDS)
        self.agent_id: str | None = None
        self.heartbeat_seconds = 30.0
        self._token = ""
        self._token_lock = threading.Lock()
        self._stop = threading.Event()
        self._beating = threading.Event()  # cleared while "stalled" (a testing aid)
        self._in_progress = 0

    # -- credentials -----------------------------------------------------------------

    @property
    def token(self) -> str:
        with self._token_lock:
            return self._token

    @token.setter
    def token(self, value: str) -> None:
        with self._token_lock:
            self._token = value

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Agent-ID": str(self.agent_id)}

    # -- 1. register -------------------------------------------------------------------

    def register(self) -> None:
        args = self.args
        body = {
            "protocol_version": PROTOCOL_VERSION,
            "name": args.name,
            "version": "0.1.0",
            "agent_type": args.agent_type,
            "capabilities": args.capabilities,
            "max_concurrent_tasks": 1,
            "metadata": {"runtime": f"python:{sys.version_info.major}.{sys.version_info.minor}"},
        }
        headers = {}
        if args.registration_token:
            headers["Authorization"] = f"Bearer {args.registration_token}"
        deadline = time.monotonic() + CONNECT_PATIENCE_SECONDS
        while True:
            try:
                response = self.http.post(f"{EAP}/register", json=body, headers=headers)
                break
            except httpx.TransportError as exc:
                # The orchestrator may still be starting: phone home until it answers.
                if time.monotonic() > deadline:
                    raise SystemExit(f"cannot reach {args.url}: {exc!r}") from exc
                time.sleep(RETRY_SECONDS)
        if response.status_code != 201:
            raise SystemExit(f"registration refused: HTTP {response.status_code} {response.text}")
        registered = response.json()
        self.agent_id = registered["agent_id"]
        self.token = registered["auth_token"]
        self.heartbeat_seconds = float(registered["heartbeat_interval_seconds"])
        emit(
            "registered",
            agent_id=self.agent_id,
            name=args.name,
            heartbeat_interval_seconds=self.heartbeat_seconds,
        )

    # -- 3. heartbeat (background thread) ------------------------------------------------

    def start_heartbeat(self) -> threading.Thread:
        self._beating.set()
        thread = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        thread.start()
        return thread

    def _heartbeat_loop(self) -> None:
        # A client of its own: httpx clients are not meant to be shared across threads.
        with httpx.Client(base_url=self.args.url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            while not self._stop.wait(self.heartbeat_seconds):
                if self._beating.is_set():
                    self._beat(http)

    def _beat(self, http: httpx.Client) -> None:
        body = {
            "status": "healthy",
            "current_load": float(self._in_progress),
            "tasks_in_progress": self._in_progress,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        url = f"{EAP}/{self.agent_id}/heartbeat"
        for _ in range(BEAT_TRIES):
            try:
                response = http.post(url, json=body, headers=self.headers())
            except httpx.HTTPError as exc:
                emit("heartbeat_failed", error=repr(exc))  # the next beat tries again
                return
            if response.status_code == 200:
                ack = response.json()
                self.token = ack["auth_token"]  # the freshest token, from now on
                self.heartbeat_seconds = float(ack["heartbeat_interval_seconds"])
                return
            emit("heartbeat_failed", status_code=response.status_code, code=error_code(response))
            if not retryable(response):
                return
            # E.g. 409 version_conflict: a result of ours changed the record meanwhile.
            time.sleep(BEAT_RETRY_SECONDS)

    # -- 4. pull ---------------------------------------------------------------------------

    def next_task(self, wait_seconds: float) -> dict[str, Any] | None:
        response = self.http.post(
            f"{EAP}/{self.agent_id}/tasks/next",
            params={"wait_seconds": round(wait_seconds, 3)},
            headers=self.headers(),
            timeout=wait_seconds + REQUEST_TIMEOUT_SECONDS,
        )
        if response.status_code == 204:
            return None
        if response.status_code == 409 and error_code(response) == "agent_not_accepting":
            # Marked offline (missed beats) or still counted busy: the next heartbeat, which
            # says "healthy", puts it back in service.
            emit("not_accepting", detail=response.json())
            time.sleep(self.heartbeat_seconds)
            return None
        if response.status_code in (401, 403):
            # Deregistered by an operator, or the token expired unrenewed: register anew.
            raise SystemExit(f"no longer authorised: {response.text}")
        if response.status_code != 200:
            emit("poll_failed", status_code=response.status_code, body=response.text[:500])
            time.sleep(RETRY_SECONDS)
            return None
        assignment: dict[str, Any] = response.json()
        return assignment

    # -- the work ----------------------------------------------------------------------------

    def work(self, task: dict[str, Any], stall: bool) -> dict[str, Any]:
        """'Do' the task and build the result to report."""
        started = time.monotonic()
        if stall:
            # Testing aid: look like a zombie (alive, but silent past the lease).
            self._beating.clear()
            emit("stalling", task_id=task["task_id"], seconds=self.args.stall_seconds)
            time.sleep(self.args.stall_seconds)
        else:
            time.sleep(self.args.work_seconds)
        content = (
            f"# {task['title']}\n\n"
            f"Done by agent {self.args.name} ({self.agent_id}), attempt {task['attempt']}.\n"
        )
        return {
            "task_id": task["task_id"],
            "status": "completed",
            "attempt": task["attempt"],
            "artifacts": [
                {
                    "path": f"results/{task['task_id']}.md",
                    "content": content,
                    "mime_type": "text/markdown",
                }
            ],
            "output_data": {"summary": f"{task['title']}: done by {self.args.name}"},
            "execution_time_ms": int((time.monotonic() - started) * 1000),
        }

    # -- 5. report ---------------------------------------------------------------------------

    def report(self, result: dict[str, Any]) -> None:
        task_id, attempt = result["task_id"], result["attempt"]
        url = f"{EAP}/{self.agent_id}/tasks/{task_id}/result"
        for trial in range(1, REPORT_TRIES + 1):
            try:
                response = self.http.post(url, json=result, headers=self.headers())
            except httpx.TransportError as exc:
                # If the first try did land, a retry is refused as lease_lost: harmless.
                emit("report_failed", task_id=task_id, attempt=attempt, error=repr(exc))
                time.sleep(trial * RETRY_SECONDS)
                continue
            if response.status_code == 200:
                ack = response.json()
                emit(
                    "done",
                    task_id=task_id,
                    attempt=attempt,
                    status_code=200,
                    task_status=ack["task_status"],
                    written=ack["written"],
                )
                return
            if response.status_code == 409 and error_code(response) == "lease_lost":
                emit("lease_lost", task_id=task_id, attempt=attempt, status_code=409)
                return
            emit(
                "result_refused",
                task_id=task_id,
                attempt=attempt,
                status_code=response.status_code,
                body=response.text[:500],
            )
            if not retryable(response):
                return
            # Nothing was recorded: until the lease runs out the task is still ours.
            time.sleep(trial * RETRY_SECONDS)

    # -- 6. leave ----------------------------------------------------------------------------

    def leave(self) -> None:
        self._stop.set()
        if self.agent_id is None:
            self.http.close()
            return
        try:
            response = self.http.delete(f"{EAP}/{self.agent_id}", headers=self.headers())
            emit("deregistered", agent_id=self.agent_id, status_code=response.status_code)
        except httpx.HTTPError as exc:
            emit("deregister_failed", agent_id=self.agent_id, error=repr(exc))
        finally:
            self.http.close()

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        args = self.args
        taken = 0
        last_task_at = time.monotonic()
        while args.max_tasks is None or taken < args.max_tasks:
            wait = LONG_POLL_SECONDS
            if args.idle_exit is not None:
                idle_left = args.idle_exit - (time.monotonic() - last_task_at)
                if idle_left <= 0:
                    emit("idle_exit", idle_seconds=args.idle_exit, tasks=taken)
                    return
                wait = min(wait, idle_left)
            try:
                task = self.next_task(wait)
            except httpx.TransportError as exc:
                emit("poll_failed", error=repr(exc))  # e.g. the orchestrator restarting
                time.sleep(RETRY_SECONDS)
                continue
            if task is None:
                continue
            taken += 1
            emit("task", task_id=task["task_id"], attempt=task["attempt"], title=task["title"])
            self._in_progress = 1
            try:
                result = self.work(task, stall=taken == args.stall_after)
                self.report(result)
            finally:
                self._in_progress = 0
                self._beating.set()
            last_task_at = time.monotonic()
        emit("max_tasks_reached", tasks=taken)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the orchestrator")
    parser.add_argument("--name", required=True, help="unique among the orchestrator's agents")
    parser.add_argument(
        "--capabilities", required=True, help="comma-separated, e.g. python,testing"
    )
    parser.add_argument("--agent-type", default="implementer")
    parser.add_argument("--registration-token", help="AGENT_REGISTRATION_TOKEN, if set")
    parser.add_argument("--max-tasks", type=int, help="exit after this many tasks")
    parser.add_argument("--idle-exit", type=float, help="exit after this long without a task")
    parser.add_argument("--work-seconds", type=float, default=0.0, help="simulated work time")
    parser.add_argument(
        "--stall-after",
        type=int,
        help="testing aid: on taking the K-th task, stop heart-beating for --stall-seconds, "
        "then report anyway",
    )
    parser.add_argument("--stall-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    args.capabilities = [c.strip() for c in args.capabilities.split(",") if c.strip()]
    if not args.capabilities:
        parser.error("--capabilities needs at least one capability")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    agent = Agent(args)
    try:
        agent.register()
        agent.start_heartbeat()
        agent.run()
    except (Terminated, KeyboardInterrupt):
        emit("terminated")
    finally:
        # A second signal must not cut the goodbye short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        agent.leave()
    return 0


if __name__ == "__main__":
    sys.exit(main())
