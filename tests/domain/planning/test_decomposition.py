"""Decomposition: engineering order, recursion, plan validation, and the shape of any tree."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from industrial_orchestrator.domain.errors import InvalidInput
from industrial_orchestrator.domain.planning.decomposition import (
    decompose,
    decompose_task,
    validate_plan,
)
from industrial_orchestrator.domain.planning.plans import Decomposition, PlannedTask
from industrial_orchestrator.domain.planning.templates import TEMPLATE_NAMES
from industrial_orchestrator.domain.tasks.graph import CycleDetected, find_cycle, topological_order
from industrial_orchestrator.domain.tasks.task import TaskType

CRUD = "Build a CRUD API for customer invoices with PostgreSQL"
MICRO = "Create a payments microservice that handles charges and refunds"
SECURITY = "Audit the login flow for OWASP issues"
UI = "Build a React dashboard page for orders"


def keys(plan: Decomposition) -> list[str]:
    return [t.key for t in plan.tasks]


def reaches(plan: Decomposition, later: str, earlier: str) -> bool:
    """Whether ``later`` depends, directly or not, on ``earlier``."""
    by_key = {t.key: t for t in plan.tasks}
    stack, seen = [later], set()
    while stack:
        for dep in by_key[stack.pop()].depends_on:
            if dep == earlier:
                return True
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return False


def check_tree(plan: Decomposition) -> None:
    """The invariants every decomposition keeps."""
    all_keys = keys(plan)
    assert len(all_keys) == len(set(all_keys))
    edges = {t.key: t.depends_on for t in plan.tasks}
    assert find_cycle(edges) is None
    for task in plan.tasks:
        assert task.title.strip()
        assert task.required_capabilities
        assert task.estimated_effort > 0
        assert set(task.depends_on) <= set(all_keys)
        assert task.key not in task.depends_on
        assert task.parent_key is None or task.parent_key in all_keys
        if task.parent_key is not None:
            assert task.key.startswith(task.parent_key + ".")
    assert set(topological_order(all_keys, edges)) == set(all_keys)
    validate_plan(plan.tasks)


# --- order -------------------------------------------------------------------------------


def test_crud_plan_order() -> None:
    plan = decompose(CRUD)
    check_tree(plan)
    assert keys(plan) == [
        "schema",
        "model",
        "repository",
        "endpoints",
        "security_review",
        "tests",
        "docs",
    ]
    chain = ["schema", "model", "repository", "endpoints", "tests", "docs"]
    for earlier, later in itertools.pairwise(chain):
        assert reaches(plan, later, earlier)
    assert reaches(plan, "security_review", "endpoints")
    assert reaches(plan, "docs", "security_review")
    assert plan.get("schema").title == "Design the database schema for customer invoices"
    assert CRUD in plan.get("schema").description
    assert plan.get("security_review").task_type == TaskType.SECURITY_AUDIT


def test_microservice_plan_order() -> None:
    plan = decompose(MICRO)
    check_tree(plan)
    chain = ["contract", "skeleton", "data", "logic", "endpoints", "integration_tests", "deploy"]
    for earlier, later in itertools.pairwise(chain):
        assert reaches(plan, later, earlier)
    assert reaches(plan, "unit_tests", "logic")
    assert not reaches(plan, "unit_tests", "integration_tests")  # the two run in parallel
    assert reaches(plan, "review", "deploy")
    assert plan.get("deploy").task_type == TaskType.DEPLOYMENT
    assert "payments" in plan.get("contract").title


def test_security_plan_audits_run_in_parallel() -> None:
    plan = decompose(SECURITY)
    check_tree(plan)
    audits = ["dependency_audit", "static_analysis", "auth_review", "input_validation"]
    for audit in audits:
        assert plan.get(audit).depends_on == ("threat_model",)
        assert reaches(plan, "remediation", audit)
    assert reaches(plan, "verification", "remediation")
    assert reaches(plan, "report", "verification")
    assert plan.get("threat_model").title == "Threat-model login flow"


def test_ui_plan_order() -> None:
    plan = decompose(UI)
    check_tree(plan)
    chain = ["ux_design", "components", "pages", "integration", "accessibility", "ui_tests"]
    for earlier, later in itertools.pairwise(chain):
        assert reaches(plan, later, earlier)
    assert "frontend" in plan.get("pages").required_capabilities


def test_generic_plan() -> None:
    plan = decompose("Implement rate limiting for the public API")
    assert keys(plan) == ["design", "implement", "test", "review"]
    assert plan.get("implement").title == "Implement rate limiting"
    check_tree(plan)


# --- recursion -----------------------------------------------------------------------------


def test_depth_two_splits_heavy_code_steps_inside_the_tree() -> None:
    plan = decompose(MICRO, max_depth=2)
    check_tree(plan)
    children = plan.children("logic")
    assert [c.key for c in children] == [
        "logic.design",
        "logic.implement",
        "logic.test",
        "logic.review",
    ]
    # The first child waits for what the parent waited for; the parent waits for its children.
    assert plan.get("logic.design").depends_on == ("data",)
    assert set(plan.get("logic").depends_on) == {"data", *(c.key for c in children)}
    assert sum(c.estimated_effort for c in children) == pytest.approx(10.0)
    assert plan.children("contract") == ()  # design steps are not split
    # Depth 1 has no children at all.
    assert all(t.parent_key is None for t in decompose(MICRO).tasks)


def test_depth_three_goes_one_level_further() -> None:
    plan = decompose(MICRO, max_depth=3)
    check_tree(plan)
    assert plan.children("logic.implement")
    assert max(t.key.count(".") for t in plan.tasks) == 2


@pytest.mark.parametrize("depth", [0, 4, -1])
def test_depth_is_bounded(depth: int) -> None:
    with pytest.raises(InvalidInput) as info:
        decompose(CRUD, max_depth=depth)
    assert info.value.details["field"] == "max_depth"


def test_decompose_is_deterministic() -> None:
    assert decompose(MICRO, max_depth=3) == decompose(MICRO, max_depth=3)


def test_decompose_one_existing_code_task() -> None:
    plan = decompose_task(
        "Implement the refund calculator",
        "Compute partial refunds with currency rounding",
        TaskType.CODE_GENERATION,
        required_capabilities=["Python"],
        estimated_effort=6,
    )
    check_tree(plan)
    assert plan.choice.template == "generic"
    assert keys(plan) == ["design", "implement", "test", "review"]
    assert plan.get("implement").title == "Implement refund calculator"
    assert plan.get("implement").required_capabilities == ("code_generation", "python")
    assert sum(t.estimated_effort for t in plan.tasks) == pytest.approx(6)


def test_decompose_non_code_task_keeps_its_type() -> None:
    plan = decompose_task(
        "Write the API docs",
        "Document every endpoint",
        TaskType.DOCUMENTATION,
        required_capabilities=["documentation"],
    )
    check_tree(plan)
    assert plan.choice.template == "generic"  # "API"/"endpoint" do not make it a CRUD build
    assert [t.task_type for t in plan.tasks] == [
        TaskType.RESEARCH,
        TaskType.DOCUMENTATION,
        TaskType.REVIEW,
    ]


def test_decompose_task_can_pick_a_template() -> None:
    plan = decompose_task("Payments service", MICRO, TaskType.CODE_GENERATION)
    assert plan.choice.template == "microservice"
    explicit = decompose_task("Anything", "", TaskType.DOCUMENTATION, template="ui")
    assert explicit.choice.explicit
    assert explicit.choice.template == "ui"


# --- validate_plan -------------------------------------------------------------------------


def planned(key: str, *deps: str, parent: str | None = None) -> PlannedTask:
    return PlannedTask(key, key, "", TaskType.TESTING, ("testing",), 1.0, deps, parent)


def test_validate_plan_refuses_bad_plans() -> None:
    with pytest.raises(InvalidInput, match="duplicate"):
        validate_plan([planned("a"), planned("a")])
    with pytest.raises(InvalidInput, match="unknown"):
        validate_plan([planned("a", "ghost")])
    with pytest.raises(CycleDetected):
        validate_plan([planned("a", "b"), planned("b", "a")])
    with pytest.raises(InvalidInput, match="unknown parent"):
        validate_plan([planned("a", parent="zz")])
    with pytest.raises(CycleDetected):
        validate_plan([planned("a", parent="b"), planned("b", parent="a")])
    with pytest.raises(InvalidInput, match="capability"):
        validate_plan([PlannedTask("a", "a", "", TaskType.TESTING, (), 1.0)])
    with pytest.raises(InvalidInput, match="effort"):
        validate_plan([PlannedTask("a", "a", "", TaskType.TESTING, ("x",), 0.0)])


# --- properties ----------------------------------------------------------------------------

prompts = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "build", "a", "CRUD", "api", "for", "invoices", "microservice", "audit", "OWASP",
                "react", "page", "the", "with", "service", "payments", ",", ".", "\n", "ui",
            ]
        ),
        max_size=15,
    ).map(" ".join),
)  # fmt: skip
templates = st.one_of(st.none(), st.sampled_from(TEMPLATE_NAMES))


@settings(max_examples=150, deadline=None)
@given(prompts, templates, st.integers(min_value=1, max_value=3))
def test_any_decomposition_is_a_valid_tree(prompt: str, template: str | None, depth: int) -> None:
    plan = decompose(prompt, template=template, max_depth=depth)
    check_tree(plan)
    assert plan.subject.strip()
    if template is not None:
        assert plan.choice.template == template
    assert decompose(prompt, template=template, max_depth=depth) == plan


@settings(max_examples=100, deadline=None)
@given(
    st.text(max_size=80),
    st.text(max_size=200),
    st.sampled_from(list(TaskType)),
    st.one_of(st.none(), st.floats(min_value=0.1, max_value=80)),
    st.integers(min_value=1, max_value=3),
)
def test_any_task_decomposition_is_a_valid_tree(
    title: str, description: str, task_type: TaskType, effort: float | None, depth: int
) -> None:
    plan = decompose_task(title, description, task_type, estimated_effort=effort, max_depth=depth)
    check_tree(plan)
