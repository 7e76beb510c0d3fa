"""schemathesis over the whole OpenAPI document with authentication on, calling as an
operator (and, on the agents' protocol, as a registered agent): no server error, no answer
outside the document, on every operation and along the document's links.

``tests/api/test_fuzz.py`` fuzzes the open (loopback) configuration; here every call
carries real credentials, so the guarded routes are exercised past their door, and the
401/403/429 answers the middleware adds must be documented too."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.python import asgi

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import load_settings
from industrial_orchestrator.domain.operator_tokens import Role
from industrial_orchestrator.services.operator_tokens import OperatorTokens
from industrial_orchestrator.services.sessions import utc_now
from industrial_orchestrator.storage.database import create_engine
from industrial_orchestrator.storage.migrate import upgrade_to_head
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory
from tests.api.test_fuzz import CHECKS, SEED, CheckedWorkflow, error_shape

MAX_EXAMPLES = 12
STATEFUL_SCENARIOS = 20
STATEFUL_MAX_STEPS = 6
EAP = "/api/v1/agents/external/"

HOME = Path(tempfile.gettempdir()) / f"io-fuzz-auth-{uuid.uuid4().hex[:12]}"
SETTINGS = load_settings(
    orchestrator_home=HOME,
    database_url=None,
    db_host=None,
    secret_key="fuzz-secret-key-" + "f" * 40,
    rate_limit_per_minute=0,  # the fuzzer makes thousands of changes on purpose
    _env_file=None,
)
app = create_app(SETTINGS, require_auth=True)
schema = schemathesis.openapi.from_dict(
    app.openapi(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "output": {"sanitization": {"enabled": False}},
        }
    ),
)
schema.app = app
CREDENTIALS: dict[str, str] = {}


async def _operator_token() -> str:
    engine = create_engine(SETTINGS.database)
    try:
        await upgrade_to_head(engine)
        tokens = OperatorTokens(SqlUnitOfWorkFactory(engine), clock=utc_now)
        return (await tokens.create("fuzzer", Role.OPERATOR)).secret
    finally:
        await engine.dispose()


def _sign(case: schemathesis.Case) -> None:
    """An operator's token everywhere; on the agents' protocol, the agent's own token and
    id (in the path too, so the call gets past the door)."""
    if case.path.startswith(EAP) and case.path != f"{EAP}register":
        case.headers = {
            **(case.headers or {}),
            "Authorization": f"Bearer {CREDENTIALS['agent_token']}",
            "X-Agent-ID": CREDENTIALS["agent_id"],
        }
        if case.path_parameters and "agent_id" in case.path_parameters:
            case.path_parameters["agent_id"] = CREDENTIALS["agent_id"]
        if case.path.endswith("/tasks/next"):
            case.query = {"wait_seconds": 0, **(case.query or {})}  # its default long-polls
        if case.query and "wait_seconds" in case.query:
            try:
                long_poll = float(case.query["wait_seconds"]) > 0
            except (TypeError, ValueError):
                long_poll = False  # invalid: answered 422 at once
            if long_poll:
                # A valid long-poll waits up to 30 s for work that never comes here.
                case.query["wait_seconds"] = 0
        return
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {CREDENTIALS['operator']}"}


@pytest.fixture(scope="module", autouse=True)
def running_app() -> Iterator[None]:
    CREDENTIALS["operator"] = asyncio.run(_operator_token())
    ready = schema["/ready"]["GET"].Case().call()
    assert ready.status_code == 200, ready.text
    refused = schema["/api/v1/sessions"]["GET"].Case().call()
    assert refused.status_code == 401, "authentication is not on: the run would prove little"
    registered = (
        schema["/api/v1/agents/external/register"]["POST"]
        .Case(
            body={
                "protocol_version": "1.0",
                "name": "fuzzed-agent",
                "version": "1",
                "agent_type": "implementer",
                "capabilities": ["code_generation"],
            }
        )
        .call()
    )
    assert registered.status_code == 201, registered.text
    CREDENTIALS["agent_token"] = registered.json()["auth_token"]
    CREDENTIALS["agent_id"] = registered.json()["agent_id"]
    yield
    asgi.shutdown_lifespans()
    shutil.rmtree(HOME, ignore_errors=True)


@schema.parametrize()
def test_api_with_credentials(case: schemathesis.Case) -> None:
    _sign(case)
    case.call_and_validate(additional_checks=[error_shape])


class SignedWorkflow(CheckedWorkflow, schema.as_state_machine()):  # type: ignore[misc]
    def before_call(self, case: schemathesis.Case) -> None:
        super().before_call(case)
        _sign(case)


TestSignedStateful = SignedWorkflow.TestCase
TestSignedStateful.settings = hypothesis.settings(
    max_examples=STATEFUL_SCENARIOS,
    stateful_step_count=STATEFUL_MAX_STEPS,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)
