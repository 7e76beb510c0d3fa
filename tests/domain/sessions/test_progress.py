"""Where a plan stands (``progress_of``): case by case on a small plan with a summary task,
and with hypothesis over random dependency graphs of leaf tasks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from industrial_orchestrator.domain.sessions.progress import PlanState, Progress, progress_of
from industrial_orchestrator.domain.tasks.task import (
    Task,
    TaskStatus,
    TaskType,
    new_task,
    task_transition,
)

S = TaskStatus
T0 = datetime(2025, 1, 1, tzinfo=UTC)

# The legal way from PENDING to each status.
PATHS: dict[TaskStatus, tuple[TaskStatus, ...]] = {
    S.PENDING: (),
    S.READY: (S.READY,),
    S.RUNNING: (S.READY, S.RUNNING),
    S.COMPLETED: (S.READY, S.RUNNING, S.COMPLETED),
    S.FAILED: (S.READY, S.RUNNING, S.FAILED),
    S.SKIPPED: (S.SKIPPED,),
    S.CANCELLED: (S.CANCELLED,),
}
FINISHED = {S.COMPLETED, S.SKIPPED}


def task(
    n: int, *, depends_on: Iterable[int] = (), parent: int | None = None, title: str = ""
) -> Task:
    return new_task(
        id=UUID(int=n),
        title=title or f"task {n}",
        description="",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["code_generation"],
        estimated_effort=1,
        now=T0,
        session_id=UUID(int=1000),
        parent_id=UUID(int=parent) if parent is not None else None,
        depends_on=[UUID(int=d) for d in depends_on],
    )


def to(t: Task, status: TaskStatus, *, minute: int = 1) -> Task:
    """``t`` moved along the table to ``status``, its last step at ``T0 + minute``."""
    now = T0 + timedelta(minutes=minute)
    for step in PATHS[status]:
        t = task_transition(t, step, now=now)
    return t


# The plan: a design task; a summary task "feature" split into two subtasks in sequence
# (the summary depends on both, as planned summaries do); docs after the feature.
DESIGN, FEATURE, IMPL_A, IMPL_B, DOCS = 1, 2, 3, 4, 5


def plan(**statuses: TaskStatus) -> dict[int, Task]:
    """The plan with the given statuses (by title); the rest PENDING."""
    tasks = {
        DESIGN: task(DESIGN, title="design"),
        FEATURE: task(FEATURE, depends_on=[IMPL_A, IMPL_B], title="feature"),
        IMPL_A: task(IMPL_A, depends_on=[DESIGN], parent=FEATURE, title="impl_a"),
        IMPL_B: task(IMPL_B, depends_on=[IMPL_A], parent=FEATURE, title="impl_b"),
        DOCS: task(DOCS, depends_on=[FEATURE], title="docs"),
    }
    by_title = {t.title: key for key, t in tasks.items()}
    for title, status in statuses.items():
        key = by_title[title]
        tasks[key] = to(tasks[key], status, minute=key)
    return tasks


def progress(tasks: dict[int, Task]) -> Progress:
    return progress_of(list(tasks.values()))


def titles(tasks: Iterable[Task]) -> list[str]:
    return [t.title for t in tasks]


# -- case by case -------------------------------------------------------------------------


def test_a_fresh_plan_starts_with_the_leaves_that_depend_on_nothing() -> None:
    shown = progress(plan())
    assert shown.state == PlanState.WORKING
    assert titles(shown.startable) == ["design"]
    assert shown.closable == []
    assert shown.finished == []
    assert shown.failed == []
    assert shown.total == 5


def test_a_leaf_becomes_startable_once_its_dependency_is_completed() -> None:
    shown = progress(plan(design=S.COMPLETED))
    assert titles(shown.startable) == ["impl_a"]
    assert shown.state == PlanState.WORKING
    assert titles(shown.finished) == ["design"]


def test_a_skipped_dependency_counts_as_finished() -> None:
    shown = progress(plan(design=S.SKIPPED))
    assert titles(shown.startable) == ["impl_a"]
    assert titles(shown.finished) == ["design"]


def test_unfinished_dependencies_hold_a_leaf_back() -> None:
    for status in (S.PENDING, S.READY, S.RUNNING, S.FAILED, S.CANCELLED):
        shown = progress(plan(design=status))
        assert "impl_a" not in titles(shown.startable), status
    # Only the first of two chained subtasks can start.
    shown = progress(plan(design=S.COMPLETED, impl_a=S.RUNNING))
    assert shown.startable == []
    assert shown.state == PlanState.WORKING


def test_ready_or_running_leaves_are_not_startable_again() -> None:
    for status in (S.READY, S.RUNNING):
        shown = progress(plan(design=status))
        assert shown.startable == []
        assert shown.state == PlanState.WORKING


def test_a_summary_is_closable_not_startable_once_its_subtasks_are_finished() -> None:
    shown = progress(plan(design=S.COMPLETED, impl_a=S.COMPLETED, impl_b=S.RUNNING))
    assert shown.closable == []
    assert shown.startable == []
    shown = progress(plan(design=S.COMPLETED, impl_a=S.COMPLETED, impl_b=S.SKIPPED))
    assert titles(shown.closable) == ["feature"]
    assert shown.startable == []  # docs waits for the summary to be closed
    assert shown.state == PlanState.WORKING  # something can still move: the close


def test_closing_the_summary_lets_what_depends_on_it_start() -> None:
    shown = progress(
        plan(design=S.COMPLETED, impl_a=S.COMPLETED, impl_b=S.COMPLETED, feature=S.COMPLETED)
    )
    assert titles(shown.startable) == ["docs"]
    assert shown.closable == []
    assert "feature" not in titles(shown.finished)


def test_done_only_when_every_task_is_finished() -> None:
    almost = plan(design=S.COMPLETED, impl_a=S.COMPLETED, impl_b=S.SKIPPED, feature=S.COMPLETED)
    for status in (S.PENDING, S.READY, S.RUNNING):
        assert progress({**almost, DOCS: to(almost[DOCS], status)}).state == PlanState.WORKING
    done = progress({**almost, DOCS: to(almost[DOCS], S.COMPLETED, minute=9)})
    assert done.state == PlanState.DONE
    assert done.startable == done.closable == done.failed == []
    assert done.total == 5


def test_finished_lists_the_leaves_only_in_the_order_they_finished() -> None:
    tasks = plan()
    finish = {IMPL_B: 3, DESIGN: 7, DOCS: 9, IMPL_A: 5, FEATURE: 4}  # not id order
    for key, minute in finish.items():
        status = S.SKIPPED if key == IMPL_B else S.COMPLETED
        tasks[key] = to(tasks[key], status, minute=minute)
    shown = progress(tasks)
    assert shown.state == PlanState.DONE
    assert titles(shown.finished) == ["impl_b", "impl_a", "design", "docs"]
    assert [t.finished_at for t in shown.finished] == sorted(
        t.finished_at for t in shown.finished if t.finished_at
    )


def test_a_failed_task_holding_back_its_dependants_makes_the_plan_stuck() -> None:
    for status in (S.FAILED, S.CANCELLED):
        shown = progress(plan(design=status))
        assert shown.state == PlanState.STUCK, status
        assert titles(shown.failed) == ["design"]
        assert shown.startable == shown.closable == []
        assert shown.finished == []


def test_a_failed_subtask_makes_the_plan_stuck_once_the_rest_has_stopped() -> None:
    shown = progress(plan(design=S.COMPLETED, impl_a=S.COMPLETED, impl_b=S.FAILED))
    assert shown.state == PlanState.STUCK
    assert titles(shown.failed) == ["impl_b"]
    assert titles(shown.finished) == ["design", "impl_a"]


def test_a_failure_is_not_stuck_while_anything_else_can_move() -> None:
    # A task still running or waiting for an agent.
    tasks = plan(design=S.FAILED)
    for status in (S.READY, S.RUNNING):
        extra = to(task(6, title="other"), status)
        shown = progress({**tasks, 6: extra})
        assert shown.state == PlanState.WORKING, status
        assert titles(shown.failed) == ["design"]
    # An independent leaf that can start.
    shown = progress({**tasks, 6: task(6, title="other")})
    assert shown.state == PlanState.WORKING
    assert titles(shown.startable) == ["other"]


def test_a_failed_task_that_holds_nothing_back_still_keeps_the_plan_from_done() -> None:
    shown = progress_of([to(task(1), S.COMPLETED), to(task(2), S.FAILED)])
    assert shown.state == PlanState.STUCK
    shown = progress_of([to(task(1), S.COMPLETED), to(task(2), S.CANCELLED)])
    assert shown.state == PlanState.STUCK


def test_an_empty_plan_is_working_not_done() -> None:
    """Not planned yet: nothing to do is not the same as everything done."""
    shown = progress_of([])
    assert shown == Progress(PlanState.WORKING, [], [], [], [], 0)


def test_a_dependency_outside_the_given_tasks_does_not_hold_back() -> None:
    shown = progress_of([task(1, depends_on=[99])])
    assert titles(shown.startable) == ["task 1"]


# -- with hypothesis ----------------------------------------------------------------------

STATUSES = [S.PENDING, S.READY, S.RUNNING, S.COMPLETED, S.SKIPPED, S.FAILED, S.CANCELLED]


@st.composite
def leaf_dags(draw: st.DrawFn) -> list[Task]:
    """1-10 leaf tasks; each depends on a subset of the ones before it (so no cycle)."""
    size = draw(st.integers(min_value=1, max_value=10))
    tasks = []
    for n in range(size):
        deps = draw(st.sets(st.integers(min_value=0, max_value=n - 1))) if n else set()
        status = draw(st.sampled_from(STATUSES))
        minute = draw(st.integers(min_value=1, max_value=5))
        tasks.append(to(task(n + 1, depends_on=[d + 1 for d in deps]), status, minute=minute))
    return draw(st.permutations(tasks))


@settings(max_examples=400, deadline=None)
@given(leaf_dags())
def test_progress_rules_hold_on_random_plans_of_leaves(tasks: list[Task]) -> None:
    shown = progress_of(tasks)
    by_id = {t.id: t for t in tasks}
    all_finished = all(t.status in FINISHED for t in tasks)

    assert (shown.state == PlanState.DONE) == all_finished
    assert shown.total == len(tasks)
    assert shown.closable == []  # no task here has subtasks
    for startable in shown.startable:
        assert startable.status == S.PENDING
        assert all(by_id[d].status in FINISHED for d in startable.depends_on)
    # And every PENDING task with finished dependencies is startable.
    expected = {
        t.id
        for t in tasks
        if t.status == S.PENDING and all(by_id[d].status in FINISHED for d in t.depends_on)
    }
    assert {t.id for t in shown.startable} == expected
    if shown.state == PlanState.STUCK:
        assert not any(t.status in (S.READY, S.RUNNING) for t in tasks)
        assert shown.startable == []
        assert shown.failed, "stuck without a failed or cancelled task"
    assert {t.id for t in shown.failed} == {
        t.id for t in tasks if t.status in (S.FAILED, S.CANCELLED)
    }
    assert {t.id for t in shown.finished} == {t.id for t in tasks if t.status in FINISHED}
    stamps = [(t.finished_at, t.id) for t in shown.finished]
    assert stamps == sorted(stamps)
