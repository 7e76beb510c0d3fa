"""Constants written into statements' text: plain names only, quoted."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql

from industrial_orchestrator.storage.written_constants import constant

pytestmark = pytest.mark.fast


def test_a_plain_name_is_written_quoted() -> None:
    written = constant("workspace.write").compile(dialect=postgresql.dialect())
    assert str(written) == "'workspace.write'"


@pytest.mark.parametrize("value", ["x' OR '1'='1", "a b", "", "it's"])
def test_anything_but_a_plain_name_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a plain constant"):
        constant(value)
