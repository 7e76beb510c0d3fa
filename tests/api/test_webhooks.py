"""Webhooks end to end, on SQLite and PostgreSQL + Redis: the real app and its background
sender, real sessions and agents driven through the API, and a real HTTP receiver on
loopback that checks every signature with the webhook's secret."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from industrial_orchestrator.domain.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookEvent,
    permission_needed_line,
)
from industrial_orchestrator.services.sessions import utc_now
from industrial_orchestrator.services.webhooks import WebhookService

from .helpers import API, act, create
from .test_external_agents import SECRET, ready_task, register

HOOKS = f"{API}/webhooks"
HOOK_SECRET = "receiver-shared-secret-0123456789"
MAX_ATTEMPTS = 3
DEADLINE_SECONDS = 30.0

pytestmark = pytest.mark.settings(
    secret_key=SECRET,
    webhook_poll_seconds=0.05,
    webhook_backoff_seconds=0.05,
    webhook_max_attempts=MAX_ATTEMPTS,
    webhook_timeout_seconds=5,
)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """An HTTP server on loopback, in its own thread, recording every POST. ``answers``
    are the status codes it gives, in turn (200 once they run out)."""

    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def record(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.received.append(Received(headers, body))
            return self.answers.pop(0) if self.answers else 200

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def signed(self, secret: str = HOOK_SECRET) -> list[dict[str, Any]]:
        """The bodies received, each checked: a valid signature, headers that agree."""
        documents = []
        for request in self.requests():
            # Checked as a receiver would, with nothing of ours: HMAC-SHA256 of the bytes.
            expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(request.headers[SIGNATURE_HEADER], f"sha256={expected}"), (
                "bad signature"
            )
            document = request.document
            assert request.headers[EVENT_HEADER] == document["kind"]
            assert request.headers[DELIVERY_HEADER] == document["id"]
            documents.append(document)
        return documents


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def start(*answers: int) -> Receiver:
        receiver = Receiver(list(answers))

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                code = receiver.record({k: v for k, v in self.headers.items()}, body)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        return receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def no_secret_listed(client: httpx.AsyncClient) -> AsyncIterator[None]:
    yield
    # Whatever the test configured, the listing never shows a secret.
    listed = await client.get(HOOKS)
    assert listed.status_code == 200
    assert all("secret" not in hook for hook in listed.json())


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, or fail after a
    generous deadline: no fixed sleep, no assertion on speed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def add_hook(
    client: httpx.AsyncClient, url: str, events: list[str], name: str = "ops", **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        HOOKS, json={"name": name, "url": url, "events": events, "secret": HOOK_SECRET, **fields}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries(client: httpx.AsyncClient, hook_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{HOOKS}/{hook_id}/deliveries", params={"page_size": 200})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def finished(client: httpx.AsyncClient, **fields: Any) -> str:
    session = await create(client, **fields)
    await act(client, session["id"], "start")
    await act(client, session["id"], "complete")
    return str(session["id"])


async def failed(client: httpx.AsyncClient) -> str:
    session = await create(client)
    await act(client, session["id"], "start")
    await act(client, session["id"], "fail", reason="tests failed")
    return str(session["id"])


def kinds_by_session(documents: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return sorted((d["kind"], d["data"].get("session_id")) for d in documents)


# -- configuration ------------------------------------------------------------------------


async def test_the_secret_is_shown_once_and_bad_configurations_are_refused(
    client, no_secret_listed
):
    made = await client.post(
        HOOKS, json={"name": "a", "url": "https://x.example/h", "events": ["session.failed"]}
    )
    assert made.status_code == 201, made.text
    assert made.json()["secret"].startswith("whsec_")
    given = await add_hook(client, "http://127.0.0.1:9/h", ["agent.degraded"], name="b")
    assert given["secret"] == HOOK_SECRET
    hook_id = given["id"]
    shown = await client.get(f"{HOOKS}/{hook_id}")
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert shown.json()["events"] == ["agent.degraded"]
    listed = (await client.get(HOOKS)).json()
    assert [hook["name"] for hook in listed] == ["a", "b"]
    assert HOOK_SECRET not in (await client.get(HOOKS)).text

    duplicate = await client.post(
        HOOKS, json={"name": "a", "url": "https://x.example/h", "events": ["session.failed"]}
    )
    assert duplicate.status_code == 409
    for url in ("ftp://x.example/h", "not a url", "http:///nohost"):
        bad = await client.post(HOOKS, json={"name": "c", "url": url, "events": ["session.failed"]})
        assert bad.status_code == 422, url
    unknown = await client.post(
        HOOKS, json={"name": "c", "url": "https://x.example/h", "events": ["session.exploded"]}
    )
    assert unknown.status_code == 422
    for kind in WebhookEvent:
        assert kind.value in unknown.json()["message"]
    none = await client.post(HOOKS, json={"name": "c", "url": "https://x.example/h", "events": []})
    assert none.status_code == 422

    paused = await client.patch(f"{HOOKS}/{hook_id}", json={"active": False})
    assert paused.json()["active"] is False
    assert (await client.post(f"{HOOKS}/{hook_id}/test")).status_code == 409
    assert (await client.delete(f"{HOOKS}/{hook_id}")).status_code == 204
    assert (await client.get(f"{HOOKS}/{hook_id}")).status_code == 404
    assert (await client.get(f"{HOOKS}/{hook_id}/deliveries")).status_code == 404
    assert (await client.delete(f"{HOOKS}/{hook_id}")).status_code == 404


# -- delivery -----------------------------------------------------------------------------


async def test_chosen_events_arrive_once_each_signed_and_others_not_at_all(
    client, app: FastAPI, serve, no_secret_listed
):
    receiver = serve()
    hook = await add_hook(client, receiver.url, ["session.finished", "session.failed"])
    done = await finished(client)
    broken = await failed(client)
    # Not chosen: an agent going degraded, a permission request.
    agent = (
        await client.post(
            f"{API}/agents",
            json={"name": "impl-1", "agent_type": "implementer", "capabilities": ["python"]},
        )
    ).json()
    beat = await client.post(f"{API}/agents/{agent['id']}/heartbeat", json={"status": "degraded"})
    assert beat.status_code == 200, beat.text
    await client.post(
        f"{API}/sessions/{done}/logs",
        json={"stream": "system", "text": permission_needed_line("bash ls", "per_1")},
    )
    # Last, so that once it has arrived every earlier event has been considered.
    last = await failed(client)

    await eventually(lambda: len(receiver.requests()) >= 3, "three notifications")
    log = await eventually(
        lambda: _all_delivered(client, hook["id"], 3), "three deliveries recorded as delivered"
    )
    documents = receiver.signed()
    assert kinds_by_session(documents) == sorted(
        [("session.finished", done), ("session.failed", broken), ("session.failed", last)]
    )
    # Each once: one request per delivery, one delivery per event.
    assert len({d["id"] for d in documents}) == len(documents) == 3
    assert len({d["event_id"] for d in documents}) == 3
    assert {entry["id"] for entry in log} == {d["id"] for d in documents}
    assert all(entry["attempts"] == 1 for entry in log)
    by_session = {d["data"]["session_id"]: d for d in documents}
    assert by_session[done]["data"]["state"] == "COMPLETED"
    assert by_session[broken]["data"]["state"] == "FAILED"
    assert by_session[broken]["data"]["reason"] == "tests failed"
    assert by_session[broken]["webhook_id"] == hook["id"]

    # Queueing again (another replica, a restart that lost its place in the log) adds
    # nothing: the database refuses a second delivery of an event to a webhook.
    webhooks = app.state.components.webhooks
    async with app.state.components.uow() as uow:
        await uow.webhooks.set_active(UUID(hook["id"]), True, 0)
        await uow.commit()
    assert await webhooks.queue_new_events() == 0
    assert len(await deliveries(client, hook["id"])) == 3


async def test_every_kind_of_notification_reaches_a_webhook_that_chose_it(
    client, serve, no_secret_listed
):
    receiver = serve()
    await add_hook(client, receiver.url, [kind.value for kind in WebhookEvent])
    agent = await register(client)
    # budget.warning: results take the session from 50 % to 85 % (warns) to 95 % (not again).
    budgeted = await create(client, max_tokens=100)
    await act(client, budgeted["id"], "start")
    for tokens in (50, 35, 10):
        item = await ready_task(client, session_id=budgeted["id"])
        assert (await agent.pull())["task_id"] == item["id"]
        await agent.report(item["id"], tokens_used=tokens)
    # permission.asked: the line the OpenCode executor writes when the operator must answer.
    written = await client.post(
        f"{API}/sessions/{budgeted['id']}/logs",
        json={"stream": "system", "text": permission_needed_line("bash rm -rf /", "per_9")},
    )
    assert written.status_code == 201, written.text
    # agent.degraded: the agent says it is degraded.
    await agent.beat(status="degraded")
    done = await finished(client)
    broken = await failed(client)

    documents = await eventually(
        lambda: len(receiver.requests()) >= 5 and receiver.signed(), "five notifications"
    )
    by_kind = {d["kind"]: d["data"] for d in documents}
    assert sorted(d["kind"] for d in documents) == sorted(kind.value for kind in WebhookEvent)
    assert by_kind["budget.warning"]["session_id"] == budgeted["id"]
    assert by_kind["budget.warning"]["tokens_used"] == 85
    assert by_kind["budget.warning"]["max_tokens"] == 100
    assert by_kind["permission.asked"]["request_id"] == "per_9"
    assert by_kind["permission.asked"]["permission"] == "bash rm -rf /"
    assert by_kind["agent.degraded"]["agent_id"] == agent.id
    assert by_kind["agent.degraded"]["to"] == "degraded"
    assert by_kind["session.finished"]["session_id"] == done
    assert by_kind["session.failed"]["session_id"] == broken


async def test_a_receiver_failing_twice_gets_the_same_signed_body_until_it_answers(
    client, serve, no_secret_listed
):
    receiver = serve(500, 500)
    hook = await add_hook(client, receiver.url, ["session.failed"])
    broken = await failed(client)
    [entry] = await eventually(
        lambda: _all_delivered(client, hook["id"], 1), "the delivery to succeed"
    )
    assert entry["attempts"] == 3
    assert entry["last_status_code"] == 200
    assert entry["last_error"] is None
    requests = receiver.requests()
    assert [r.headers["X-Orchestrator-Attempt"] for r in requests] == ["1", "2", "3"]
    assert len({r.body for r in requests}) == 1  # the same bytes, the same delivery id
    documents = receiver.signed()
    assert all(d == documents[0] for d in documents)
    document = documents[0]
    assert document["id"] == entry["id"]
    assert document["data"]["session_id"] == broken


async def test_a_dead_receiver_ends_failed_after_the_last_attempt(client, no_secret_listed):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = await add_hook(client, f"http://127.0.0.1:{port}/hook", ["session.failed"])
    await failed(client)

    async def gave_up() -> list[dict[str, Any]] | None:
        log = await deliveries(client, hook["id"])
        return log if log and log[0]["status"] == "failed" else None

    [entry] = await eventually(gave_up, "the delivery to fail")
    assert entry["attempts"] == MAX_ATTEMPTS
    assert entry["last_status_code"] is None
    assert entry["last_error"]
    assert entry["next_attempt_at"] is None
    assert entry["delivered_at"] is None


async def test_a_deleted_webhook_is_sent_nothing_more(client, serve, no_secret_listed):
    kept_receiver, gone_receiver = serve(), serve()
    kept = await add_hook(client, kept_receiver.url, ["session.failed"], name="kept")
    gone = await add_hook(client, gone_receiver.url, ["session.failed"], name="gone")
    first = await failed(client)
    await eventually(lambda: len(gone_receiver.requests()) == 1, "the first notification")
    assert (await client.delete(f"{HOOKS}/{gone['id']}")).status_code == 204

    second = await failed(client)
    third = await failed(client)
    # The kept webhook hears of both; by the time it has, the sender has been through the
    # rounds in which the deleted one would have been sent them.
    await eventually(lambda: len(kept_receiver.requests()) == 3, "the kept webhook's three")
    assert [d["data"]["session_id"] for d in gone_receiver.signed()] == [first]
    assert sorted(d["data"]["session_id"] for d in kept_receiver.signed()) == sorted(
        [first, second, third]
    )
    assert len(await deliveries(client, kept["id"])) == 3


async def test_a_paused_webhook_hears_nothing_of_what_happens_while_paused(
    client, serve, no_secret_listed
):
    receiver = serve()
    hook = await add_hook(client, receiver.url, ["session.failed"])
    paused = await client.patch(f"{HOOKS}/{hook['id']}", json={"active": False})
    assert paused.status_code == 200
    await failed(client)
    resumed = await client.patch(f"{HOOKS}/{hook['id']}", json={"active": True})
    assert resumed.json()["active"] is True
    after = await failed(client)
    await eventually(lambda: receiver.requests(), "a notification")
    await eventually(lambda: _all_delivered(client, hook["id"], 1), "its delivery recorded")
    assert [d["data"]["session_id"] for d in receiver.signed()] == [after]


async def test_a_webhook_another_replica_creates_is_sent_to_although_this_one_saw_none(
    client, app: FastAPI, serve, no_secret_listed
):
    components = app.state.components
    await failed(client)  # news while no webhook exists: the sender finds none
    await eventually(lambda: components.webhooks.none_active, "the sender finding no webhook")
    # Another replica's service on the same database: this one does not hear of it.
    other = WebhookService(components.uow, clock=utc_now, policy=components.webhooks.policy)
    receiver = serve()
    await other.create("elsewhere", receiver.url, ["session.failed"], secret=HOOK_SECRET)
    after = await failed(client)
    [document] = await eventually(receiver.signed, "the notification")
    assert document["data"]["session_id"] == after
    assert not components.webhooks.none_active


async def test_a_test_delivery_is_sent_signed(client, serve, no_secret_listed):
    receiver = serve()
    hook = await add_hook(client, receiver.url, ["agent.degraded"])
    queued = await client.post(f"{HOOKS}/{hook['id']}/test")
    assert queued.status_code == 202, queued.text
    assert queued.json()["kind"] == "webhook.test"
    [document] = await eventually(receiver.signed, "the test delivery")
    assert document["id"] == queued.json()["id"]
    assert document["kind"] == "webhook.test"
    assert document["event_id"] is None
    [entry] = await eventually(lambda: _all_delivered(client, hook["id"], 1), "its record")
    assert entry["status"] == "delivered"


async def _all_delivered(
    client: httpx.AsyncClient, hook_id: str, count: int
) -> list[dict[str, Any]] | None:
    log = await deliveries(client, hook_id)
    if len(log) == count and all(entry["status"] == "delivered" for entry in log):
        return log
    return None
