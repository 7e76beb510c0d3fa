"""``orchestrator demo --exit-when-done``: a newcomer's first run, end to end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ..server_process import free_port, orchestrator_command, orchestrator_env

pytestmark = pytest.mark.slow


def test_the_demo_runs_its_sample_session_to_completed_and_exits_0(
    opencode_bin: Path, tmp_path: Path
) -> None:
    env = orchestrator_env(OPENCODE_BIN=str(opencode_bin), HOME=str(tmp_path / "user-home"))
    env.pop("ENGINE_ENABLED", None)  # the demo runs its own engine, whatever the caller says
    home = tmp_path / "demo"
    finished = subprocess.run(
        orchestrator_command(
            "demo", "--exit-when-done", "--port", str(free_port()), "--home", str(home)
        ),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-4000:]
    assert "DEMO" in finished.stderr
    assert "planned 4 task(s) by the architect agent" in output
    assert "COMPLETED all tasks done; verified by `python3 test_calc.py`" in output
    assert "changed:   README.md, calc.py, test_calc.py" in output
    assert "calc: all checks passed" in output
    # The sample repository is the operator's: its checkout is untouched, the branch added.
    sample = home / "calc"
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=sample, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""
    branches = subprocess.run(
        ["git", "branch", "--list", "--format=%(refname:short)", "orchestrator/*"],
        cwd=sample,
        capture_output=True,
        text=True,
        check=True,
    )
    assert branches.stdout.strip().startswith("orchestrator/")
    assert "multiply" not in (sample / "calc.py").read_text()
    assert os.path.isdir(home / "orchestrator" / "worktrees")
