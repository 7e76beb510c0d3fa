"""Template choice: keyword scores, the threshold, explicit names."""

from __future__ import annotations

import pytest

from industrial_orchestrator.domain.errors import InvalidInput
from industrial_orchestrator.domain.planning.template_choice import (
    CHOOSE_THRESHOLD,
    choose_template,
    score_templates,
)
from industrial_orchestrator.domain.planning.templates import TEMPLATE_NAMES

CRUD = "Build a CRUD API for customer invoices with PostgreSQL"
MICRO = "Create a payments microservice that handles charges and refunds"
SECURITY = "Audit the login flow for OWASP issues"
UI = "Build a React dashboard page for orders"


@pytest.mark.parametrize(
    ("prompt", "template", "must_match"),
    [
        (CRUD, "crud", {"crud", "postgresql"}),
        (MICRO, "microservice", {"microservice"}),
        (SECURITY, "security", {"audit", "owasp"}),
        (UI, "ui", {"react", "dashboard", "page"}),
        ("Expose a gRPC service for pricing, deployed on Kubernetes", "microservice", {"grpc"}),
        ("Harden the admin panel against XSS and CSRF", "security", {"xss", "csrf"}),
        ("Implement rate limiting", "generic", set()),
    ],
)
def test_choose_template_for_realistic_prompts(
    prompt: str, template: str, must_match: set[str]
) -> None:
    choice = choose_template(prompt)
    assert choice.template == template
    assert not choice.explicit
    assert must_match <= set(choice.matched)
    if template == "generic":
        assert choice.score == 0.0
    else:
        assert CHOOSE_THRESHOLD < choice.score < 1


def test_scores_are_sorted_and_bounded() -> None:
    scores = score_templates(CRUD)
    assert scores[0].template == "crud"
    assert scores[0].matched == ("crud", "api", "postgresql")
    assert scores[0].score == pytest.approx(1 - 0.2 * 0.85 * 0.7, abs=1e-4)
    assert [s.score for s in scores] == sorted((s.score for s in scores), reverse=True)
    assert {s.template for s in scores} == set(TEMPLATE_NAMES) - {"generic"}


def test_keywords_match_whole_words_case_insensitively() -> None:
    # "ui" inside "guide"/"build" and "secure" inside "insecure" are not keywords.
    assert choose_template("Build a guide for the build pipeline").template == "generic"
    assert choose_template("Refactor the insecure helpers").template == "generic"
    ui = next(s for s in score_templates("Two PAGES and a Dashboard") if s.template == "ui")
    assert ui.matched == ("dashboard", "page")


def test_explicit_template_wins_and_is_flagged() -> None:
    choice = choose_template(CRUD, " Security ")
    assert (choice.template, choice.explicit) == ("security", True)
    assert choose_template(CRUD, "generic").score == 0.0


def test_unknown_template_lists_known_names() -> None:
    with pytest.raises(InvalidInput) as info:
        choose_template(CRUD, "kanban")
    assert info.value.details["known"] == list(TEMPLATE_NAMES)
    assert "microservice" in info.value.message
