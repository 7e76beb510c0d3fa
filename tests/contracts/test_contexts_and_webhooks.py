"""Contexts (guarded saves, expiry, conflicts settled once) and webhooks (names taken
once, deliveries queued once per event, due ones oldest first, guarded sends)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.contexts.conflicts import ConflictRecord, ConflictStatus
from industrial_orchestrator.domain.contexts.context import ContextScope, Resolution, new_context
from industrial_orchestrator.domain.webhooks import Delivery, DeliveryStatus, Webhook, WebhookEvent
from industrial_orchestrator.services.ports import DuplicateKeyError, UnitOfWorkFactory

from .builders import at


async def test_contexts_saved_guarded_and_deleted_with_their_conflicts(uow: UnitOfWorkFactory):
    task_id, session_id = uuid4(), uuid4()
    shared = new_context(
        id=uuid4(), scope=ContextScope.GLOBAL, owner_id=None, name="g", data={"a": 1}, now=at(0)
    )
    scratch = new_context(
        id=uuid4(),
        scope=ContextScope.TEMPORARY,
        owner_id=task_id,
        name="t",
        data={},
        now=at(1),
        ttl=timedelta(seconds=10),
    )
    lasting = new_context(
        id=uuid4(), scope=ContextScope.TEMPORARY, owner_id=task_id, name="l", data={}, now=at(2)
    )
    of_session = new_context(
        id=uuid4(), scope=ContextScope.SESSION, owner_id=session_id, name="s", data={}, now=at(0)
    )
    conflict = ConflictRecord(uuid4(), scratch.id, "w", "stale", {"b": 2}, None, 1, {}, at(3))
    async with uow() as unit:
        for context in (lasting, scratch, shared, of_session):
            await unit.contexts.add(context)
        await unit.contexts.add_conflict(conflict)
        await unit.commit()
    edited = shared.evolve(data={"a": 2}, version=2, updated_at=at(5))
    async with uow() as unit:
        contexts = unit.contexts
        assert await contexts.find(scope=None) == sorted(
            [shared, scratch, lasting, of_session], key=lambda c: (c.created_at, c.id)
        )
        assert await contexts.find(scope=ContextScope.TEMPORARY) == [scratch, lasting]
        assert await contexts.find(scope=None, owner_ids=[session_id]) == [of_session]
        assert not await contexts.save(shared.evolve(version=4), edited)
        assert await contexts.save(shared, edited)
        assert not await contexts.save(shared, edited)
        assert await contexts.conflicts(scratch.id, ConflictStatus.OPEN) == [conflict]
        assert await contexts.delete_expired(at(10)) == 0
        assert await contexts.delete_expired(at(11)) == 1
        assert await contexts.conflict(conflict.id) is None  # went with its context
        assert await contexts.delete_temporary_of(task_id) == 1
        assert await contexts.delete_temporary_of(task_id) == 0
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.contexts.find(scope=None) == sorted(
            [edited, of_session], key=lambda c: (c.created_at, c.id)
        )


async def test_a_conflict_is_settled_once(uow: UnitOfWorkFactory):
    context = new_context(
        id=uuid4(), scope=ContextScope.GLOBAL, owner_id=None, name="g", data={}, now=at(0)
    )
    older = ConflictRecord(uuid4(), context.id, "w1", "stale", {"x": (1,)}, None, 1, {}, at(1))
    newer = ConflictRecord(uuid4(), context.id, "w2", "stale", {}, None, 1, {}, at(2))
    async with uow() as unit:
        await unit.contexts.add(context)
        await unit.contexts.add_conflict(newer)
        await unit.contexts.add_conflict(older)
        await unit.commit()
    settled = replace(
        older,
        status=ConflictStatus.RESOLVED,
        resolution=Resolution.CURRENT,
        resolved_by="op",
        resolved_at=at(9),
        incoming={"x": [1]},
    )
    async with uow() as unit:
        contexts = unit.contexts
        assert await contexts.settle(settled)
        assert not await contexts.settle(settled)
        assert await contexts.conflict(older.id) == settled
        assert await contexts.conflicts(context.id, None) == [settled, newer]
        assert await contexts.conflicts(context.id, ConflictStatus.OPEN) == [newer]
        await unit.commit()


def webhook(name: str, n: int, *, active: bool = True) -> Webhook:
    return Webhook(uuid4(), name, "http://hook", "s3cret", frozenset(WebhookEvent), active, at(n))


def delivery(hook: Webhook, event_id: int | None, n: int, due: int | None = None) -> Delivery:
    return Delivery(
        uuid4(),
        hook.id,
        event_id,
        "session.finished",
        {"n": n},
        DeliveryStatus.PENDING,
        at(n),
        next_attempt_at=at(due) if due is not None else None,
    )


async def test_webhooks_and_their_deliveries(uow: UnitOfWorkFactory):
    hook, quiet = webhook("b-hook", 1), webhook("a-hook", 1, active=False)
    async with uow() as unit:
        await unit.webhooks.add(hook)
        await unit.webhooks.add(quiet)
        await unit.commit()
    async with uow() as unit:
        with pytest.raises(DuplicateKeyError):
            await unit.webhooks.add(webhook("b-hook", 2))
    first, second, test = delivery(hook, 7, 1, 5), delivery(hook, 8, 2, 3), delivery(hook, None, 3)
    muted = delivery(quiet, 7, 0, 0)
    async with uow() as unit:
        webhooks = unit.webhooks
        assert await webhooks.all() == [quiet, hook]
        assert await webhooks.all(active_only=True) == [hook]
        for each in (first, second, test, muted):
            assert await webhooks.queue(each)
        assert not await webhooks.queue(delivery(hook, 7, 9, 0))  # that event is queued
        assert await webhooks.queue(delivery(hook, None, 4))  # a test delivery never is
        assert [d.id for d, _ in await webhooks.due(at(5), limit=10)] == [second.id, first.id]
        assert [d.id for d, _ in await webhooks.due(at(4), limit=10)] == [second.id]
        due = await webhooks.due(at(9), limit=1)
        assert due == [(second, hook)]
        page, total = await webhooks.deliveries(hook.id, offset=1, limit=2)
        assert ([d.id for d in page], total) == ([test.id, second.id], 4)
        sent = replace(second, status=DeliveryStatus.DELIVERED, attempts=1, delivered_at=at(6))
        assert await webhooks.save_delivery(second, sent)
        assert not await webhooks.save_delivery(second, sent)
        assert await webhooks.delivery(second.id) == sent

        await webhooks.advance(hook.id, 10)
        await webhooks.advance(hook.id, 4)  # never back
        stored = await webhooks.get(hook.id)
        assert stored is not None
        assert stored.last_event_id == 10
        assert await webhooks.set_active(quiet.id, True, 3)
        assert await webhooks.set_active(hook.id, False, None)
        assert not await webhooks.set_active(uuid4(), True, None)
        assert await webhooks.all(active_only=True) == [
            replace(quiet, active=True, last_event_id=3)
        ]
        assert await webhooks.delete(hook.id)
        assert not await webhooks.delete(hook.id)
        assert await webhooks.delivery(first.id) is None  # went with its webhook
        await unit.commit()
