"""The task record and its transition table, pair by pair and with hypothesis."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from industrial_orchestrator.domain.errors import IllegalTransition, InvalidInput
from industrial_orchestrator.domain.tasks.task import (
    FINISHED_STATUSES,
    TERMINAL_STATUSES,
    Task,
    TaskStatus,
    TaskType,
    allowed_targets,
    can_transition,
    is_finished,
    is_terminal,
    new_task,
    normalise_capabilities,
    task_fields,
    task_from_fields,
    task_transition,
)

from ..task_builders import every_field_set

S = TaskStatus
T0 = datetime(2025, 1, 1, tzinfo=UTC)

# Written out independently of the code.
EXPECTED = {
    "PENDING": {"READY", "CANCELLED", "SKIPPED"},
    "READY": {"RUNNING", "PENDING", "CANCELLED", "SKIPPED"},
    "RUNNING": {"COMPLETED", "FAILED", "CANCELLED"},
    "FAILED": {"READY", "CANCELLED"},
    "COMPLETED": set(),
    "SKIPPED": set(),
    "CANCELLED": set(),
}


def make_task(status: TaskStatus = S.PENDING, **changes: object) -> Task:
    task = new_task(
        id=UUID(int=1),
        title="Implement the invoices repository",
        description="CRUD for invoices",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["Python", "code_generation"],
        estimated_effort=3,
        now=T0,
    )
    return task.evolve(status=status, **changes)


def test_type_values_are_lower_case_as_specified() -> None:
    assert [t.value for t in TaskType] == [
        "design",
        "code_generation",
        "testing",
        "review",
        "security_audit",
        "documentation",
        "deployment",
        "research",
    ]


@pytest.mark.parametrize(("source", "target"), list(itertools.product(S, S)))
def test_transition_table_pair_by_pair(source: TaskStatus, target: TaskStatus) -> None:
    assert can_transition(source, target) == (target.value in EXPECTED[source.value])


def test_terminal_and_finished_sets() -> None:
    assert {s.value for s in TERMINAL_STATUSES} == {"COMPLETED", "SKIPPED", "CANCELLED"}
    assert {s.value for s in FINISHED_STATUSES} == {"COMPLETED", "SKIPPED"}
    assert not is_terminal(S.FAILED)  # a failed task may be retried
    assert is_finished(S.SKIPPED)
    assert not is_finished(S.FAILED)
    assert not is_finished(S.CANCELLED)
    for status in TERMINAL_STATUSES:
        assert allowed_targets(status) == []


def test_new_task_normalises_and_starts_pending() -> None:
    task = make_task()
    assert task.status == S.PENDING
    assert task.required_capabilities == ("code_generation", "python")
    assert task.estimated_effort == 3.0
    assert task.version == 1
    assert task.created_at == task.updated_at == T0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": "  "}, "title"),
        ({"estimated_effort": 0}, "estimated_effort"),
        ({"estimated_effort": -1.5}, "estimated_effort"),
        ({"required_capabilities": ["python", " "]}, "required_capabilities"),
        ({"depends_on": [UUID(int=9)]}, "depends_on"),
    ],
)
def test_new_task_refuses_bad_input(changes: dict[str, object], field: str) -> None:
    kwargs: dict[str, object] = {
        "id": UUID(int=9),
        "title": "t",
        "description": "",
        "task_type": TaskType.TESTING,
        "required_capabilities": ["testing"],
        "estimated_effort": 1.0,
        "now": T0,
        **changes,
    }
    with pytest.raises(InvalidInput) as info:
        new_task(**kwargs)  # type: ignore[arg-type]
    assert info.value.details["field"] == field


def test_normalise_capabilities() -> None:
    assert normalise_capabilities([" Python", "python", "SECURITY_AUDIT", "go"]) == (
        "go",
        "python",
        "security_audit",
    )
    assert normalise_capabilities([]) == ()
    with pytest.raises(InvalidInput):
        normalise_capabilities(["ok", ""])


@given(st.lists(st.text(min_size=1).filter(lambda s: s.strip())))
def test_normalise_capabilities_is_idempotent_and_sorted(values: list[str]) -> None:
    once = normalise_capabilities(values)
    assert normalise_capabilities(once) == once
    assert list(once) == sorted(set(once))


def test_happy_path_sets_timestamps_and_versions() -> None:
    task = make_task()
    ready = task_transition(task, S.READY, now=T0 + timedelta(seconds=1))
    running = task_transition(ready, S.RUNNING, now=T0 + timedelta(seconds=2))
    done = task_transition(running, S.COMPLETED, now=T0 + timedelta(seconds=9), summary="ok")
    assert [t.version for t in (task, ready, running, done)] == [1, 2, 3, 4]
    assert running.started_at == T0 + timedelta(seconds=2)
    assert running.finished_at is None
    assert done.started_at == running.started_at
    assert done.finished_at == done.updated_at == T0 + timedelta(seconds=9)
    assert done.result_summary == "ok"
    assert done.is_terminal


def test_failed_task_is_retried_keeping_first_start() -> None:
    running = make_task(S.RUNNING, started_at=T0)
    failed = task_transition(running, S.FAILED, now=T0 + timedelta(minutes=1), summary="boom")
    assert failed.finished_at == T0 + timedelta(minutes=1)
    assert failed.result_summary == "boom"
    retried = task_transition(failed, S.READY, now=T0 + timedelta(minutes=2))
    assert retried.finished_at is None
    assert retried.result_summary == "boom"  # kept until a new summary replaces it
    again = task_transition(retried, S.RUNNING, now=T0 + timedelta(minutes=3))
    assert again.started_at == T0


def test_refused_transition_names_states() -> None:
    task = make_task(S.COMPLETED)
    with pytest.raises(IllegalTransition) as info:
        task_transition(task, S.RUNNING, now=T0)
    assert info.value.details == {
        "task_id": str(task.id),
        "current_state": "COMPLETED",
        "requested_state": "RUNNING",
        "allowed_states": [],
    }
    assert "COMPLETED -> RUNNING is not allowed" in info.value.message


def test_refused_transition_lists_allowed_in_order() -> None:
    with pytest.raises(IllegalTransition) as info:
        task_transition(make_task(S.PENDING), S.COMPLETED, now=T0)
    assert info.value.details["allowed_states"] == ["READY", "SKIPPED", "CANCELLED"]


@settings(max_examples=150)
@given(st.lists(st.sampled_from(list(S)), max_size=12))
def test_any_walk_follows_the_table(targets: list[TaskStatus]) -> None:
    task = make_task().evolve(id=uuid4())
    now = T0
    for target in targets:
        now += timedelta(seconds=1)
        if can_transition(task.status, target):
            moved = task_transition(task, target, now=now)
            assert moved.version == task.version + 1
            assert moved.status == target
            assert (moved.finished_at is not None) == (is_terminal(target) or target == S.FAILED)
            if moved.started_at is not None:
                assert moved.started_at <= now
            task = moved
        else:
            with pytest.raises(IllegalTransition):
                task_transition(task, target, now=now)


# The one mapping to plain values (``task_fields``) and back: every field, from a database
# row or from JSON text.


def test_every_field_is_mapped_and_read_back() -> None:
    task = every_field_set()
    fields = task_fields(task)
    assert set(fields) == {f.name for f in dataclasses.fields(Task)}
    assert task_from_fields(fields) == task


def test_plain_values_only_enums_as_their_values_and_tuples_as_lists() -> None:
    task = every_field_set()
    fields = task_fields(task)
    assert (fields["task_type"], fields["status"]) == ("testing", "FAILED")
    assert {type(fields["task_type"]), type(fields["status"])} == {str}
    assert fields["required_capabilities"] == ["python", "testing"]
    assert fields["depends_on"] == list(task.depends_on)
    assert fields["files"] == ["src/invoices/", "tests/test_invoices.py"]


def test_read_back_from_json_text_and_from_zoneless_times() -> None:
    task = every_field_set()
    text = json.dumps(task_fields(task), default=str)
    assert task_from_fields(json.loads(text)) == task
    bare = make_task()  # its optional fields at their defaults (None, empty)
    assert task_from_fields(json.loads(json.dumps(task_fields(bare), default=str))) == bare
    # SQLite gives times back without their zone: they are UTC.
    naive = {
        name: value.replace(tzinfo=None)
        for name, value in task_fields(task).items()
        if isinstance(value, datetime)
    }
    assert len(naive) == 4
    assert task_from_fields(task_fields(task) | naive) == task
