"""A serving process's garbage collector: what start-up built is frozen out of later
collections, and young collections come less often (``cli.collector_tuning``). Run in a
fresh interpreter: freezing this test process would keep its garbage for the whole run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from industrial_orchestrator.cli.collector_tuning import OLDER_THRESHOLDS, YOUNG_THRESHOLD

pytestmark = pytest.mark.fast

_PROBE = """
import gc, json
import industrial_orchestrator.api.app  # what a serving process has built by then
from industrial_orchestrator.cli.collector_tuning import tune_collector
before = gc.get_freeze_count()
tune_collector()
young_tracked = len(gc.get_objects(generation=0))
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(),
                  "thresholds": gc.get_threshold(), "young": young_tracked}))
"""


def test_tuning_freezes_what_start_up_built_and_raises_the_thresholds() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(done.stdout)
    assert seen["before"] == 0
    # The app's modules alone hold tens of thousands of tracked objects.
    assert seen["frozen"] > 20_000
    assert seen["young"] < 100
    assert tuple(seen["thresholds"]) == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
