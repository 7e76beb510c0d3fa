"""Subjects: what a prompt is about, read from its first sentence."""

from __future__ import annotations

import pytest

from industrial_orchestrator.domain.planning.decomposition import decompose
from industrial_orchestrator.domain.planning.subjects import extract_subject

CRUD = "Build a CRUD API for customer invoices with PostgreSQL"
MICRO = "Create a payments microservice that handles charges and refunds"
SECURITY = "Audit the login flow for OWASP issues"
UI = "Build a React dashboard page for orders"


@pytest.mark.parametrize(
    ("prompt", "template", "subject"),
    [
        (CRUD, "crud", "customer invoices"),
        (MICRO, "microservice", "payments"),
        (SECURITY, "security", "login flow"),
        (UI, "ui", "orders"),
        ("Build a new order processing microservice", "microservice", "order processing"),
        ("", "generic", "the requested change"),
    ],
)
def test_subject_is_read_from_the_prompt(prompt: str, template: str, subject: str) -> None:
    assert extract_subject(prompt, template) == subject
    assert decompose(prompt).subject == subject


def test_subject_falls_back_to_title() -> None:
    assert extract_subject("???", "generic", fallback="Billing  revamp") == "Billing revamp"
    assert decompose("...", title="Billing revamp").subject == "Billing revamp"
