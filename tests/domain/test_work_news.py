"""Which commits wake the agents waiting on ``tasks/next``: those that may make a task
claimable, and no others."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.events import EventType, NewEvent
from industrial_orchestrator.domain.tasks.task import TaskStatus
from industrial_orchestrator.domain.work_news import offers_work

AT = datetime(2026, 12, 4, tzinfo=UTC)


def event(kind: EventType, **payload: Any) -> NewEvent:
    return NewEvent(kind, AT, uuid4(), payload)


def shown(news: NewEvent) -> str:
    return f"{news.type.value}:{news.payload.get('from')}->{news.payload.get('to')}"


def moved(before: TaskStatus, after: TaskStatus) -> NewEvent:
    return event(EventType.TASK_TRANSITION, **{"from": before.value, "to": after.value})


@pytest.mark.parametrize(
    "news",
    [
        moved(TaskStatus.PENDING, TaskStatus.READY),  # a dependency finished
        moved(TaskStatus.RUNNING, TaskStatus.READY),  # a lease taken back
        moved(TaskStatus.RUNNING, TaskStatus.COMPLETED),  # its files free again
        moved(TaskStatus.RUNNING, TaskStatus.FAILED),
        moved(TaskStatus.RUNNING, TaskStatus.CANCELLED),
        event(EventType.TASK_CREATED),
        event(EventType.SESSION_TRANSITION),
        event(EventType.AGENT_REGISTERED),
        event(EventType.AGENT_DEREGISTERED),
        event(EventType.AGENT_STATUS_CHANGED),
        event(EventType.AGENT_TIER_CHANGED),
    ],
    ids=shown,
)
def test_what_may_make_a_task_claimable_is_news(news: NewEvent) -> None:
    assert offers_work([news])
    assert offers_work([event(EventType.SESSION_LOG), news])


@pytest.mark.parametrize(
    "noise",
    [
        moved(TaskStatus.READY, TaskStatus.RUNNING),  # someone took one
        moved(TaskStatus.PENDING, TaskStatus.SKIPPED),
        moved(TaskStatus.READY, TaskStatus.CANCELLED),
        event(EventType.TASK_LEASED),
        event(EventType.TASK_HELD_UP),
        event(EventType.TASK_DEPENDENCY_ADDED),
        event(EventType.SESSION_LOG),
        event(EventType.SESSION_TELEMETRY),
        event(EventType.SESSION_PHASE),
        event(EventType.CHECKPOINT_CREATED),
        event(EventType.CONTEXT_UPDATED),
    ],
    ids=shown,
)
def test_what_only_takes_work_away_or_is_unrelated_is_not(noise: NewEvent) -> None:
    assert not offers_work([noise])


def test_a_commit_of_nothing_is_not_news() -> None:
    assert not offers_work([])
