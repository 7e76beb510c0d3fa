"""The gate an architect agent's plan passes: its answer is untrusted input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.agents.plans import (
    ARCHITECT,
    MAX_PLAN_TASKS,
    parse_agent_plan,
    plan_request,
)
from industrial_orchestrator.domain.errors import InvalidInput
from industrial_orchestrator.domain.tasks.graph import CycleDetected
from industrial_orchestrator.domain.tasks.task import TaskType

KNOWN = {"code_generation", "testing", "system_design"}


def task(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "key": key,
        "title": f"Do {key}",
        "description": f"All of {key}",
        "task_type": "code_generation",
        "required_capabilities": ["code_generation"],
        "estimated_effort": 1.5,
        **fields,
    }


def answer(*tasks: dict[str, Any]) -> str:
    return json.dumps({"tasks": list(tasks)})


def test_a_good_plan_becomes_the_architects_decomposition() -> None:
    text = answer(
        task("design", task_type="design", required_capabilities=["System_Design"]),
        task("build", depends_on=["design"]),
        task("test", task_type="testing", required_capabilities=["testing"], depends_on=["build"]),
    )
    plan = parse_agent_plan(text, KNOWN, "Payments")
    assert plan.choice.template == ARCHITECT
    assert plan.subject == "Payments"
    assert [t.key for t in plan.tasks] == ["design", "build", "test"]
    assert plan.tasks[0].task_type == TaskType.DESIGN
    assert plan.tasks[0].required_capabilities == ("system_design",)
    assert plan.tasks[2].depends_on == ("build",)
    assert plan.tasks[1].estimated_effort == 1.5


def test_the_plan_may_come_in_a_fenced_block_among_words() -> None:
    text = "Here is the plan:\n```json\n" + answer(task("only")) + "\n```\nGood luck."
    assert [t.key for t in parse_agent_plan(text, KNOWN, "x").tasks] == ["only"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no json here", "holds no JSON object"),
        ("[1, 2]", "holds no JSON object"),
        (json.dumps({"steps": []}), 'no "tasks" list'),
        (json.dumps({"tasks": []}), 'no "tasks" list'),
        (answer("not an object"), "task 1 is not an object"),  # type: ignore[arg-type]
        (answer(task("a", title="")), "task 1 needs a non-empty title"),
        (answer(task("a", task_type="dancing")), "unknown task_type 'dancing'"),
        (answer(task("a", required_capabilities="code")), "list of names"),
        (answer(task("a", required_capabilities=["rocketry"])), "no agent has: rocketry"),
        (answer(task("a", estimated_effort="lots")), "not a number"),
        (answer(task("a", estimated_effort=True)), "not a number"),
        (answer(task("a", estimated_effort=0)), "positive estimated effort"),
        (answer(task("a", depends_on="b")), "depends_on as a list"),
        (answer(task("a", depends_on=["ghost"])), "ghost"),
        (answer(task("a"), task("a")), "duplicate task key 'a'"),
        ("{" + " " * 70_000 + "}", "the limit is"),
    ],
)
def test_an_unusable_answer_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_agent_plan(text, KNOWN, "x")


def test_a_cycle_is_refused() -> None:
    text = answer(task("a", depends_on=["b"]), task("b", depends_on=["a"]))
    with pytest.raises(CycleDetected):
        parse_agent_plan(text, KNOWN, "x")


def test_too_many_tasks_are_refused() -> None:
    text = answer(*(task(f"t{i}") for i in range(MAX_PLAN_TASKS + 1)))
    with pytest.raises(InvalidInput, match=f"the limit is {MAX_PLAN_TASKS}"):
        parse_agent_plan(text, KNOWN, "x")


@given(st.text(max_size=400))
def test_no_answer_whatever_it_holds_gets_past_the_gate_unchecked(text: str) -> None:
    try:
        plan = parse_agent_plan(text, KNOWN, "x")
    except (InvalidInput, CycleDetected):
        return
    for planned in plan.tasks:
        assert set(planned.required_capabilities) <= KNOWN
        assert planned.estimated_effort > 0


def test_the_request_names_the_goal_and_only_the_known_capabilities() -> None:
    request = plan_request("Build a payments API", ["testing", "code_generation"])
    assert "Build a payments API" in request
    assert "may only name: code_generation, testing." in request
    assert f"At most {MAX_PLAN_TASKS} tasks" in request
