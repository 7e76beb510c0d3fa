"""``orchestrator token create`` writes to the database directly, past the API's edge:
a name holding a byte that is not UTF-8 (which reaches Python as a lone surrogate) is
refused with a message that shows it, and nothing is stored."""

from __future__ import annotations

import json
from pathlib import Path

from tests.server_process import orchestrator_env, run_cli


def test_a_name_that_cannot_be_stored_is_refused_clearly(tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = orchestrator_env(ORCHESTRATOR_HOME=str(tmp_path / "home"))
    # A NUL cannot be passed in argv at all; a stray byte arrives as U+DCFF.
    refused = run_cli("token", "create", "--name", "ci\udcff", env=env, cwd=workdir)
    assert refused.returncode == 1, refused.stderr
    assert "token name 'ci\\udcff'" in refused.stderr
    assert "letters, digits" in refused.stderr
    listed = run_cli("token", "list", "--json", env=env, cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == ""


def test_a_name_with_a_trailing_newline_is_refused_and_the_bare_name_is_not(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = orchestrator_env(ORCHESTRATOR_HOME=str(tmp_path / "home"))
    refused = run_cli("token", "create", "--name", "ci\n", env=env, cwd=workdir)
    assert refused.returncode == 1, refused.stderr
    assert "token name 'ci\\n'" in refused.stderr
    assert "letters, digits" in refused.stderr
    created = run_cli("token", "create", "--name", "ci", env=env, cwd=workdir)
    assert created.returncode == 0, created.stderr
    listed = run_cli("token", "list", "--json", env=env, cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["ci"]
