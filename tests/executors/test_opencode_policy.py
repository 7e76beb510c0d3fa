"""What the OpenCode executor decides without a server: which permission requests it
may allow on the operator's behalf, and what it tells an agent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.tasks.task import TaskType, new_task
from industrial_orchestrator.executors.opencode.fleet import (
    DEFAULT_FLEET,
    FleetConfigError,
    load_fleet,
)
from industrial_orchestrator.executors.opencode.permissions import PATH_PERMISSIONS, inside_tree
from industrial_orchestrator.executors.opencode.prompt import MAX_CONTEXT_CHARS, task_prompt


@pytest.mark.parametrize(
    ("patterns", "allowed"),
    [
        (["src/app.py"], True),
        (["{tree}/src/app.py"], True),
        (["{tree}/*"], True),
        (["src/a.py", "docs/b.md"], True),
        ([], False),
        (["../outside.txt"], False),
        (["/etc/passwd"], False),
        (["src/../../escape"], False),
        (["*.py"], False),
        (["link/secret"], False),
    ],
)
def test_only_paths_that_stay_inside_the_tree_are_allowed(
    tmp_path: Path, patterns: list[str], allowed: bool
) -> None:
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "link").symlink_to(tmp_path)  # a link out of the tree does not count as inside
    given = [p.replace("{tree}", str(tree)) for p in patterns]
    assert inside_tree(given, tree) is allowed


def test_shell_commands_are_never_the_executors_to_allow() -> None:
    assert "bash" not in PATH_PERMISSIONS
    assert {"edit", "write", "read"} <= PATH_PERMISSIONS


def test_the_default_fleet_covers_every_capability_the_templates_ask_for() -> None:
    from industrial_orchestrator.domain.planning.templates import TEMPLATES

    wanted = {c for plan in TEMPLATES.values() for step in plan.steps for c in step.capabilities}
    held = {c for agent in DEFAULT_FLEET for c in agent.capabilities}
    assert wanted <= held
    assert load_fleet(None) == list(DEFAULT_FLEET)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not a valid fleet"),
        ('[{"name": "a"}]', "not a valid fleet"),
        (
            '[{"name": "a", "agent_type": "x", "capabilities": ["c"], "model": "nomodel"}]',
            "not a valid fleet",
        ),
        (
            '[{"name": "a", "agent_type": "x", "capabilities": ["c"]},'
            ' {"name": "a", "agent_type": "y", "capabilities": ["d"]}]',
            "names an agent twice",
        ),
    ],
)
def test_a_bad_fleet_definition_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(FleetConfigError, match=message):
        load_fleet(text)


def test_a_fleet_agent_registers_as_internal_with_its_opencode_agent_and_model() -> None:
    [agent] = load_fleet(
        '[{"name": "coder", "agent_type": "implementer", "capabilities": ["code_generation"],'
        ' "opencode_agent": "build"}]'
    )
    draft = agent.registration("anthropic/claude-sonnet-4")
    assert draft.kind.value == "internal"
    assert draft.metadata == {
        "executor": "opencode",
        "opencode_agent": "build",
        "model": "anthropic/claude-sonnet-4",
    }


def test_the_prompt_holds_goal_task_dependencies_and_bounded_context() -> None:
    now = datetime.now(UTC)
    task = new_task(
        id=uuid4(),
        title="Write the parser",
        description="Parse the config file",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["code_generation"],
        estimated_effort=1.0,
        now=now,
    )
    dependency = task.evolve(title="Design the format", result_summary="TOML, one table")
    prompt = task_prompt(
        goal="Ship config support",
        task=task,
        context={"style": "x" * (MAX_CONTEXT_CHARS * 2)},
        finished_dependencies=[dependency],
        workspace="/w",
    )
    assert "# Goal of the session\nShip config support" in prompt
    assert "# Your task: Write the parser\nParse the config file" in prompt
    assert "- Design the format: TOML, one table" in prompt
    assert "[… cut]" in prompt
    assert len(prompt) < MAX_CONTEXT_CHARS + 2_000
    # The goal is not repeated when the task is the goal itself (a single-task plan).
    single = task_prompt(
        goal="Parse the config file",
        task=task,
        context={},
        finished_dependencies=[],
        workspace="/w",
    )
    assert "# Goal of the session" not in single
