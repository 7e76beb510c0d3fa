"""OpenAPI operation ids that generated clients can use as method names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from industrial_orchestrator.api.app import API_SECTIONS, create_app
from industrial_orchestrator.api.operation_ids import group_of
from industrial_orchestrator.config import load_settings


@pytest.fixture(scope="module")
def operations(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    home: Path = tmp_path_factory.mktemp("ids")
    document = create_app(load_settings(orchestrator_home=home, _env_file=None)).openapi()
    return {
        (method.upper(), path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/api/v1/sessions", "sessions_create"),
        ("GET", "/api/v1/sessions", "sessions_list"),
        ("POST", "/api/v1/sessions/{session_id}/pause", "sessions_pause"),
        ("POST", "/api/v1/agents/route", "agents_route"),
        ("DELETE", "/api/v1/agents/{agent_id}", "agents_deregister"),
        ("POST", "/api/v1/agents/external/{agent_id}/heartbeat", "eap_heartbeat"),
        ("PATCH", "/api/v1/contexts/{context_id}", "contexts_write"),
        ("GET", "/ready", "operations_ready"),
    ],
)
def test_operations_are_named_group_then_verb(
    operations: dict[tuple[str, str], dict], method: str, path: str, expected: str
) -> None:
    assert operations[(method, path)]["operationId"] == expected


def test_every_operation_id_is_unique_readable_and_starts_with_its_group(
    operations: dict[tuple[str, str], dict],
) -> None:
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids))
    for (method, path), operation in operations.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)+", operation["operationId"]), (method, path)
        assert operation["operationId"].startswith(group_of(operation["tags"][0]) + "_")
        assert "api_v1" not in operation["operationId"]


def test_a_tag_with_an_abbreviation_goes_by_it() -> None:
    assert group_of("external agents (EAP)") == "eap"
    assert group_of("sessions") == "sessions"
    assert group_of("Agent Fleet") == "agent_fleet"


def test_the_agents_protocol_is_matched_first_and_the_reference_keeps_its_sections(
    tmp_path: Path,
):
    """FastAPI tries an app's routes in order (the OpenAPI document lists its paths in
    that order): the agents' protocol, most of a fleet's requests, comes first; the API
    reference's sections stay in their reading order."""
    document = create_app(load_settings(orchestrator_home=tmp_path, _env_file=None)).openapi()
    paths = list(document["paths"])
    eap = [path for path in paths if path.startswith("/api/v1/agents/external/")]
    assert eap
    assert paths[: len(eap)] == eap
    assert [tag["name"] for tag in document["tags"]] == list(API_SECTIONS)
    used = {
        tag
        for methods in document["paths"].values()
        for operation in methods.values()
        for tag in operation["tags"]
    }
    assert used == set(API_SECTIONS)
