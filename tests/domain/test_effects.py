"""The side-effect ledger's entries and keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.effects import (
    MAX_KEY_LENGTH,
    EffectKind,
    EffectState,
    checkpoint_key,
    finished,
    pending_effect,
    workspace_write_key,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_an_effect_is_recorded_pending_and_finished_with_its_outcome() -> None:
    task = uuid4()
    effect = pending_effect(
        workspace_write_key(task, 2),
        EffectKind.WORKSPACE_WRITE,
        now=NOW,
        task_id=task,
        detail={"attempt": 2},
    )
    assert effect.state == EffectState.PENDING
    assert not effect.is_done
    done = finished(effect, NOW + timedelta(seconds=1), {"written": ["a.py"]})
    assert done.is_done
    assert done.detail == {"attempt": 2, "written": ["a.py"]}
    assert done.done_at == NOW + timedelta(seconds=1)
    assert effect.detail == {"attempt": 2}  # the recorded entry is not changed


def test_keys_name_what_the_effect_is_for() -> None:
    task, session = uuid4(), uuid4()
    assert workspace_write_key(task, 1) != workspace_write_key(task, 2)
    assert checkpoint_key(session, "planned") != checkpoint_key(session, "verified:0")
    assert checkpoint_key(session, "x" * 500).startswith(f"checkpoint:{session}:")
    assert len(checkpoint_key(session, "x" * 500)) == MAX_KEY_LENGTH


@pytest.mark.parametrize("key", ["", "k" * (MAX_KEY_LENGTH + 1)])
def test_a_key_must_be_short_and_not_empty(key: str) -> None:
    with pytest.raises(ValueError, match="effect key"):
        pending_effect(key, EffectKind.WORKSPACE_WRITE, now=NOW)


def test_finishing_drops_what_only_a_crash_needed() -> None:
    effect = pending_effect(
        "k", EffectKind.CHECKPOINT_COMMIT, now=NOW, detail={"label": "x", "data": {"big": 1}}
    )
    done = finished(effect, NOW, {"commit": "abc"}, drop=["data"])
    assert done.detail == {"label": "x", "commit": "abc"}
