"""Session options: every rule of ``session_options()``, and the JSON round trip."""

from __future__ import annotations

import math
from typing import Any

import pytest

from industrial_orchestrator.domain.errors import InvalidInput
from industrial_orchestrator.domain.planning.templates import TEMPLATES
from industrial_orchestrator.domain.sessions.options import (
    DEFAULT_REVIEW_ROUNDS,
    SINGLE_TASK,
    TEMPLATE_CHOICES,
    SessionOptions,
    session_options,
)


def test_defaults_choose_the_template_from_the_prompt_and_set_no_limits() -> None:
    options = session_options()
    assert options == SessionOptions()
    assert options.template is None
    assert options.verify_command is None
    assert options.max_review_rounds == DEFAULT_REVIEW_ROUNDS == 2
    assert options.timeout_seconds is None
    assert options.max_tokens is None
    assert options.max_cost_usd is None


def test_the_choices_are_every_template_plus_single() -> None:
    assert (*TEMPLATES, "single") == TEMPLATE_CHOICES
    assert SINGLE_TASK == "single"


@pytest.mark.parametrize("template", TEMPLATE_CHOICES)
def test_every_listed_template_is_accepted(template: str) -> None:
    assert session_options(template=template).template == template


@pytest.mark.parametrize("template", ["nope", "", "CRUD", " crud", "Single"])
def test_an_unknown_template_is_refused_listing_the_choices(template: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        session_options(template=template)
    error = raised.value
    assert error.details == {"field": "template", "choices": list(TEMPLATE_CHOICES)}
    assert repr(template) in error.message
    for choice in TEMPLATE_CHOICES:
        assert choice in error.message


@pytest.mark.parametrize("command", ["", " ", "\t\n  "])
def test_a_blank_verify_command_is_refused(command: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        session_options(verify_command=command)
    assert raised.value.details == {"field": "verify_command"}
    assert "blank" in raised.value.message


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("pytest -q", "pytest -q"),
        ("  make test\n", "make test"),
        ("\tnpm test  &&  npm run lint \t", "npm test  &&  npm run lint"),
    ],
)
def test_the_verify_command_is_stripped_at_the_ends_only(given: str, kept: str) -> None:
    assert session_options(verify_command=given).verify_command == kept


@pytest.mark.parametrize("rounds", [0, 1, DEFAULT_REVIEW_ROUNDS, 20, 1000])
def test_zero_or_more_review_rounds_are_accepted(rounds: int) -> None:
    assert session_options(max_review_rounds=rounds).max_review_rounds == rounds


@pytest.mark.parametrize("rounds", [-1, -20])
def test_negative_review_rounds_are_refused(rounds: int) -> None:
    with pytest.raises(InvalidInput) as raised:
        session_options(max_review_rounds=rounds)
    assert raised.value.details == {"field": "max_review_rounds"}


LIMITS = ["timeout_seconds", "max_tokens", "max_cost_usd", "max_parallel_tasks"]


def limit(field: str, value: float) -> dict[str, Any]:
    return {field: value}


@pytest.mark.parametrize("field", LIMITS)
@pytest.mark.parametrize("value", [0, -1, 0.0, -0.5, math.nan])
def test_a_non_positive_limit_is_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(InvalidInput) as raised:
        session_options(**limit(field, value))
    error = raised.value
    assert error.details["field"] == field
    assert error.details["value"] is value
    assert error.message == f"{field} must be positive"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_seconds", 1),
        ("timeout_seconds", 3600),
        ("max_tokens", 1),
        ("max_tokens", 250_000),
        ("max_cost_usd", 0.01),
        ("max_cost_usd", 12.5),
    ],
)
def test_a_positive_limit_is_kept(field: str, value: float) -> None:
    options = session_options(**limit(field, value))
    assert getattr(options, field) == value
    # The others stay unset.
    for other in LIMITS:
        if other != field:
            assert getattr(options, other) is None


def test_the_first_broken_rule_is_reported() -> None:
    with pytest.raises(InvalidInput) as raised:
        session_options(template="nope", verify_command=" ", max_review_rounds=-1)
    assert raised.value.details["field"] == "template"


FULL = SessionOptions(
    template="crud",
    verify_command="pytest -q",
    max_review_rounds=3,
    timeout_seconds=900,
    max_tokens=50_000,
    max_cost_usd=2.5,
    max_parallel_tasks=2,
    planner="agent",
    amendment="Keep the API stable.",
    agents=("alpha", "beta"),
)


def test_to_json_names_every_field() -> None:
    assert FULL.to_json() == {
        "template": "crud",
        "verify_command": "pytest -q",
        "max_review_rounds": 3,
        "timeout_seconds": 900,
        "max_tokens": 50_000,
        "max_cost_usd": 2.5,
        "max_parallel_tasks": 2,
        "planner": "agent",
        "amendment": "Keep the API stable.",
        "agents": ["alpha", "beta"],
    }
    assert SessionOptions().to_json() == {
        "template": None,
        "verify_command": None,
        "max_review_rounds": DEFAULT_REVIEW_ROUNDS,
        "timeout_seconds": None,
        "max_tokens": None,
        "max_cost_usd": None,
        "max_parallel_tasks": None,
        "planner": "template",
        "amendment": None,
        "agents": [],
    }


@pytest.mark.parametrize(
    "options",
    [
        SessionOptions(),
        FULL,
        session_options(template="single", verify_command="  true  ", max_review_rounds=0),
    ],
)
def test_from_json_reads_back_what_to_json_wrote(options: SessionOptions) -> None:
    assert SessionOptions.from_json(options.to_json()) == options


@pytest.mark.parametrize("data", [None, {}])
def test_from_json_of_nothing_is_the_defaults(data: dict[str, Any] | None) -> None:
    assert SessionOptions.from_json(data) == SessionOptions()


def test_from_json_ignores_unknown_keys() -> None:
    data = {**FULL.to_json(), "retired_option": True, "priority": "HIGH"}
    assert SessionOptions.from_json(data) == FULL


def test_from_json_fills_missing_keys_with_the_defaults() -> None:
    """Rows written before a field existed still load."""
    assert SessionOptions.from_json({"template": "ui"}) == SessionOptions(template="ui")


def test_an_unknown_planner_is_refused_naming_the_choices() -> None:
    with pytest.raises(InvalidInput, match="Unknown planner 'oracle'") as refused:
        session_options(planner="oracle")
    assert refused.value.details == {"field": "planner", "choices": ["template", "agent"]}
