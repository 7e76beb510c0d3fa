"""Property-based fuzzing of the whole HTTP API with schemathesis: never a 500 for bad input.

Every operation of the app's own OpenAPI document is called with generated requests, valid
and invalid (schemathesis' examples, coverage and fuzzing phases, positive and negative
modes), and every response must:

* not be a 5xx (``not_a_server_error``);
* have a documented status code, content type, headers and, when the document gives one, a
  body matching the documented schema (``status_code_conformance``,
  ``content_type_conformance``, ``response_headers_conformance``,
  ``response_schema_conformance``);
* if it is a 4xx, carry the API's one error shape ``{"error": str, "message": str,
  "details": ...}`` (``error_shape`` below), whether documented for that route or not.

A stateful run then chains calls along the links schemathesis infers from the document
(create a session, then act on its id), so the ``{session_id}`` routes are exercised on
sessions that exist and not only on random UUIDs that answer 404.

The app runs on SQLite in a temporary directory. Its lifespan (migrations, engine) is run by
schemathesis' in-process ASGI client, in that client's own event loop, on the first request;
``running_app`` makes that first request and checks readiness before any test, and shuts the
lifespan down afterwards. Generation is derandomized with a fixed seed and no example
database, so a failure is reproducible; each failure report ends with a curl command.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.python import asgi

from industrial_orchestrator.api.app import create_app
from industrial_orchestrator.config import load_settings
from industrial_orchestrator.storage.tables import metadata

SEED = 20240611
MAX_EXAMPLES = 30  # per operation, fuzzing phase; the coverage phase adds its own cases
STATEFUL_SCENARIOS = 40
STATEFUL_MAX_STEPS = 8

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)

# The schema has to exist at collection time for `parametrize`, so the app is built here;
# nothing touches the disk or the database until the first request starts its lifespan.
# DATABASE_URL/DB_HOST are overridden so an exported PostgreSQL URL cannot redirect the run.
HOME = Path(tempfile.gettempdir()) / f"io-fuzz-{uuid.uuid4().hex[:12]}"
app = create_app(
    load_settings(orchestrator_home=HOME, database_url=None, db_host=None, _env_file=None)
)

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
            # Keep reproductions complete: Idempotency-Key would otherwise print as [Filtered].
            "output": {"sanitization": {"enabled": False}},
        }
    ),
)
# What `schemathesis.openapi.from_asgi` does after fetching /openapi.json, without the fetch
# (which would start the app's lifespan during test collection).
schema.app = app


def error_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx answers ``{"error": str, "message": str, "details": ...}`` and nothing else."""
    if not 400 <= response.status_code < 500:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{response.status_code} body is not JSON: {response.text[:200]!r}"
        ) from None
    assert isinstance(body, dict), f"{response.status_code} body is not an object: {body!r}"
    assert set(body) == {"error", "message", "details"}, (
        f"{response.status_code} body has keys {sorted(body)}, "
        "expected exactly error, message, details"
    )
    assert isinstance(body["error"], str), f"'error' is not a string: {body['error']!r}"
    assert isinstance(body["message"], str), f"'message' is not a string: {body['message']!r}"


@pytest.fixture(scope="module", autouse=True)
def running_app() -> Iterator[None]:
    # The first request starts the lifespan; without it every route would fail with a 500
    # (no app.state.components), which would make the fuzzing meaningless.
    ready = schema["/ready"]["GET"].Case().call()
    assert ready.status_code == 200, ready.text
    assert hasattr(app.state, "components")
    assert (HOME / "orchestrator.db").is_file()
    yield
    # Ends the lifespan schemathesis started (it would otherwise run until interpreter exit).
    asgi.shutdown_lifespans()
    shutil.rmtree(HOME, ignore_errors=True)


def test_every_operation_is_fuzzed() -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    loaded = {result.ok().label for result in schema.get_all_operations()}
    assert loaded == documented
    assert "POST /api/v1/sessions/{session_id}/checkpoints" in loaded


@schema.parametrize()
def test_api(case: schemathesis.Case) -> None:
    case.call_and_validate(additional_checks=[error_shape])


def empty_database() -> None:
    """Delete every row, so each stateful scenario starts from the same state (an agent
    name taken by an earlier scenario would turn a 201 into a 409 on replay)."""
    with closing(sqlite3.connect(HOME / "orchestrator.db", timeout=10)) as db, db:
        for table in reversed(metadata.sorted_tables):
            db.execute(f"DELETE FROM {table.name}")


class CheckedWorkflow:
    """What every stateful run here does around schemathesis' state machine (mixed in
    before it): headers that would stall the scenarios are left out, and every answer
    gets the error-shape check too."""

    def before_call(self, case: schemathesis.Case) -> None:
        # The stateless test fuzzes these two headers. Here a random If-Match would make
        # nearly every verb a 422 and a repeated Idempotency-Key a 409 replay, so the
        # scenarios would never move a session through its lifecycle.
        for name in ("If-Match", "Idempotency-Key"):
            case.headers.pop(name, None)

    def validate_response(
        self,
        response: schemathesis.Response,
        case: schemathesis.Case,
        additional_checks: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().validate_response(  # type: ignore[misc]
            response, case, additional_checks=[*(additional_checks or []), error_shape], **kwargs
        )


class APIWorkflow(CheckedWorkflow, schema.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        # Hypothesis replays a scenario to shrink it and expects the same rules to be
        # enabled; leftovers of earlier scenarios (e.g. all running slots taken) would
        # change the answers and end in FlakyStrategyDefinition instead of the failure.
        empty_database()


TestStateful = APIWorkflow.TestCase
TestStateful.settings = hypothesis.settings(
    max_examples=STATEFUL_SCENARIOS,
    stateful_step_count=STATEFUL_MAX_STEPS,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)
